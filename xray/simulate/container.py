"""Containers and vehicles as the beam sees them: walls, rails, floor, frames, chassis.

The beam crosses the container's width (z). Plates perpendicular to the beam (side
walls, rail webs) add little; plates parallel to it (roof, floor, cross-members, end
walls, doors) are crossed edge-on along the whole width and show as dark lines. All
sizes are ISO 668 / typical manufacturer figures in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xray.simulate.canvas import Canvas, disc_profile

# Exterior length, interior length (mm). Height 2591, width 2438 for both.
SIZES = {"20ft": (6058, 5898), "40ft": (12192, 12032)}
EXT_HEIGHT, EXT_WIDTH = 2591, 2438
CONTAINER_BOTTOM_MM = 1200  # deck height of a container chassis above the road
CANVAS_HEIGHT_MM = 4000
MARGIN_MM = 60


@dataclass(frozen=True)
class ContainerSpec:
    size: str = "40ft"  # "20ft" or "40ft"
    reefer: bool = False  # insulated walls and a refrigeration unit at the front
    truck: bool = True  # on a road chassis with wheels; False = rail / crane, nothing below


@dataclass(frozen=True)
class Hold:
    """The cargo space in canvas pixels: goods stand on `y_floor` and go up to `y_roof`."""

    x0: int
    x1: int
    y_roof: int
    y_floor: int
    depth_cm: float

    @property
    def height(self) -> int:
        return self.y_floor - self.y_roof


def canvas_size(spec: ContainerSpec, pixel_mm: float) -> tuple[int, int]:
    """(height, width) in pixels of the canvas for a container."""
    ext = SIZES[spec.size][0]
    return int(round(CANVAS_HEIGHT_MM / pixel_mm)), int(round((ext + 2 * MARGIN_MM) / pixel_mm))


def container_bounds(spec: ContainerSpec, pixel_mm: float) -> tuple[int, int, int, int]:
    """(front x, door x, top y, bottom y) of the container's exterior in canvas pixels, doors on the right."""

    def px(mm: float) -> int:
        return int(round(mm / pixel_mm))

    xf = px(MARGIN_MM)
    y_bot = canvas_size(spec, pixel_mm)[0] - px(CONTAINER_BOTTOM_MM)
    return xf, xf + px(SIZES[spec.size][0]), y_bot - px(EXT_HEIGHT), y_bot


def draw_container(canvas: Canvas, spec: ContainerSpec, rng: np.random.Generator) -> Hold:
    """Draw the container (and its chassis) with the doors on the right; return its hold."""
    px = canvas.px
    ext_len, int_len = SIZES[spec.size]
    xf = px(MARGIN_MM)  # front end (exterior)
    xd = xf + px(ext_len)  # door end (exterior)
    y_bot = canvas.height - px(CONTAINER_BOTTOM_MM)
    y_top = y_bot - px(EXT_HEIGHT)
    wall_cm = 2 * 0.16  # two corrugated side walls of 1.6 mm steel

    # Side walls: perpendicular to the beam; the sloped flanks of the trapezoidal
    # corrugation (pitch 278 mm) are crossed obliquely and add ~13 % path.
    x = np.arange(xf, xd)
    phase = rng.uniform(0, 278)
    pos = ((x - xf) * canvas.pixel_mm + phase) % 278
    slope = ((pos > 72) & (pos < 141)) | (pos > 209)
    if spec.reefer:
        # Reefer: flat stainless skins, aluminium liners, 100 mm polyurethane foam.
        canvas.add_path("aluminium", xf, y_top, xd, y_bot, 2 * 0.25)
        canvas.add_path("organic", xf, y_top, xd, y_bot, 2 * 10.0, density=0.04)
    else:
        canvas.add_path(
            "iron", xf, y_top, xd, y_bot, np.where(slope, wall_cm * 1.13, wall_cm)[None, :].astype(np.float32)
        )

    # Roof: a 2 mm corrugated sheet crossed edge-on; the line waves with the ribs.
    rib = (np.sin((x - xf) * canvas.pixel_mm / 230.0 * 2 * np.pi) > 0).astype(int)
    rows = y_top + px(20) + rib * px(15)
    canvas.iron[rows, x] += np.float32(7.87 * 235 * min(1.0, 2 / canvas.pixel_mm))
    # Top side rails (rectangular tubes 60 x 60 x 4) and bottom side rails (C 162 mm).
    canvas.add_path("iron", xf, y_top, xd, y_top + px(60), 4 * 0.4)
    canvas.add_path("iron", xf, y_top, xd, y_top + 2, 2 * 6.0)
    canvas.add_path("iron", xf, y_bot - px(162), xd, y_bot, 2 * 0.45)
    canvas.add_path("iron", xf, y_bot - px(162), xd, y_bot - px(162) + 1, 2 * 4.8)
    canvas.add_path("iron", xf, y_bot - 1, xd, y_bot, 2 * 4.8)

    # Floor: 28 mm plywood (aluminium T-bars in a reefer) on cross-members, all edge-on.
    y_floor = y_bot - px(160)
    if spec.reefer:
        canvas.add_path("aluminium", xf, y_floor, xd, y_floor + px(60), 235 * 0.25)
    canvas.add_path("carbon", xf, y_floor, xd, y_floor + px(28), 235.0, density=0.7)
    n_cm = 28 if spec.size == "40ft" else 16
    for cx in np.linspace(xf + px(300), xd - px(300), n_cm).astype(int):
        canvas.add_path("iron", cx, y_floor + px(28), cx + 1, y_bot - px(10), 150.0)
        canvas.add_path("iron", cx - px(20), y_floor + px(28), cx + px(25), y_floor + px(28) + 1, 120.0)
        canvas.add_path("iron", cx - px(20), y_bot - px(11), cx + px(25), y_bot - px(10), 120.0)

    # End frames: corner posts, the corrugated front wall and the doors (edge-on),
    # corner castings, door header and sill, four locking bars and their cams.
    for end, inward in ((xf, 1), (xd, -1)):
        lo, hi = sorted((end, end + inward * px(150)))
        canvas.add_path("iron", lo, y_top, hi, y_bot, 3.6)
        lo, hi = sorted((end, end + inward * px(36)))
        canvas.add_path("iron", lo, y_top, hi, y_bot, 14.0)
        cw = px(178)
        for yc in (y_top, y_bot - px(118)):
            lo, hi = sorted((end, end + inward * cw))
            canvas.add_path("iron", lo, yc, hi, yc + px(118), 8.0)
        canvas.add_path(
            "iron",
            min(end, end + inward * px(150)),
            y_top + px(60),
            max(end, end + inward * px(150)),
            y_top + px(160),
            20.0,
        )
    canvas.add_path("iron", xd - px(40), y_top + px(100), xd - px(8), y_bot - px(100), 8.4)
    for yc in (y_top + px(130), y_bot - px(180)):
        canvas.add_path("iron", xd - px(60), yc, xd - px(5), yc + px(50), 12.0)

    x_in0 = xf + px((ext_len - int_len) / 2)
    x_in1 = xd - px((ext_len - int_len) / 2) - px(40)
    y_roof = y_top + px(EXT_HEIGHT - 2393) - px(40)
    depth_cm = 235.0
    if spec.reefer:
        x_in0 = _draw_reefer_unit(canvas, rng, xf, y_top, y_bot)
        y_roof += px(100)
        depth_cm = 229.0
    if spec.truck:
        _draw_chassis(canvas, rng, xf, xd, y_bot, spec.size)
    return Hold(x0=x_in0, x1=x_in1, y_roof=y_roof, y_floor=y_floor, depth_cm=depth_cm)


def _draw_reefer_unit(canvas: Canvas, rng: np.random.Generator, xf: int, y_top: int, y_bot: int) -> int:
    """Refrigeration machinery in the front 0.4 m: compressor, coils, fans. Returns the hold start."""
    px = canvas.px
    x0, x1 = xf + px(40), xf + px(420)
    canvas.add_path("aluminium", x0, y_top + px(150), x1, y_bot - px(200), 12.0)  # evaporator/condenser coils
    comp_y = y_bot - px(200) - px(rng.uniform(420, 520))
    canvas.add_path("iron", x0 + px(40), comp_y, x0 + px(300), y_bot - px(220), 22.0)  # compressor
    canvas.add_path("iron", x0 + px(20), y_top + px(300), x0 + px(360), y_top + px(310), 60.0)  # bulkhead
    fan = disc_profile(px(200), px(170))
    for fy in (y_top + px(400), y_top + px(900)):
        canvas.add_path("iron", x0 + px(10), fy, x0 + px(10) + fan.shape[1], fy + fan.shape[0], 3.0 * fan)
    canvas.add_path("organic", x1, y_top, x1 + px(100), y_bot, 235.0, density=0.04)  # insulated bulkhead
    return x1 + px(100)


def _draw_chassis(canvas: Canvas, rng: np.random.Generator, xf: int, xd: int, y_bot: int, size: str) -> None:
    """A skeletal container trailer: main rails, cross-members, landing legs, axles with dual wheels."""
    px = canvas.px
    rail_h = px(300)
    x0, x1 = xf + px(100), xd - px(50)
    canvas.add_path("iron", x0, y_bot, x1, y_bot + rail_h, 2 * 0.8)  # I-beam webs
    canvas.add_path("iron", x0, y_bot, x1, y_bot + 2, 30.0)  # flanges, edge-on
    canvas.add_path("iron", x0, y_bot + rail_h - 2, x1, y_bot + rail_h, 30.0)
    for cx in range(x0 + px(300), x1, px(600)):
        canvas.add_path("iron", cx, y_bot + px(40), cx + 1, y_bot + rail_h - px(40), 100.0)
    # Landing legs 2.3 m behind the kingpin end.
    lx = xf + px(2300)
    ground = canvas.height
    canvas.add_path("iron", lx, y_bot + rail_h, lx + px(100), ground - px(250), 4 * 0.6)
    canvas.add_path("iron", lx, y_bot + rail_h, lx + 2, ground - px(250), 20.0)
    canvas.add_path("iron", lx - px(60), ground - px(250), lx + px(160), ground - px(230), 20.0)
    # Axles at the rear; wheel radius 500 mm, centres 500 mm above the road.
    n_axles = 3 if size == "40ft" else int(rng.integers(2, 4))
    r = px(500)
    tyre = disc_profile(r, px(290))
    rim = disc_profile(px(290), px(270))
    hub = disc_profile(px(210))
    axle = disc_profile(px(65))
    rear = xd - px(rng.uniform(900, 1400))
    cy = ground - r
    for k in range(n_axles):
        cx = rear - k * px(1310) - r
        canvas.add_path(
            "carbon", cx - r, cy - r, cx - r + tyre.shape[1], cy - r + tyre.shape[0], 4 * 28.0 * tyre, density=1.15
        )
        canvas.add_path("iron", cx - r, cy - r, cx - r + tyre.shape[1], cy - r + tyre.shape[0], 4 * 0.3 * tyre)
        o = r - px(290)
        canvas.add_path(
            "iron", cx - r + o, cy - r + o, cx - r + o + rim.shape[1], cy - r + o + rim.shape[0], 4 * 8.0 * rim
        )
        o = r - px(270)
        disc = disc_profile(px(270))
        canvas.add_path(
            "iron", cx - r + o, cy - r + o, cx - r + o + disc.shape[1], cy - r + o + disc.shape[0], 4 * 1.2 * disc
        )  # wheel discs
        o = r - px(210)
        canvas.add_path(
            "iron", cx - r + o, cy - r + o, cx - r + o + hub.shape[1], cy - r + o + hub.shape[0], 4 * 3.0 * hub
        )
        o = r - px(65)
        canvas.add_path(
            "iron", cx - r + o, cy - r + o, cx - r + o + axle.shape[1], cy - r + o + axle.shape[0], 120.0 * axle
        )
        canvas.add_path("iron", cx - px(450), y_bot + rail_h, cx + px(450), y_bot + rail_h + px(60), 2 * 2.5)  # springs
    # Rear under-run guard: a tube across the width, edge-on.
    canvas.add_path("iron", xd - px(150), ground - px(550), xd - px(50), ground - px(450), 100.0)
    canvas.add_path("iron", xd - px(120), y_bot + rail_h, xd - px(80), ground - px(550), 2 * 1.0)
