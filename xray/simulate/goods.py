"""Goods as the beam sees them: one drawing function per goods category.

Each function fills a `Lot` (a stretch of the hold) with one category's typical
packing (cartons on pallets, bottles in layers, stacked tyres, vehicles, bales,
machines) and returns the boxes of what it drew, in canvas pixels. Densities are
bulk densities of the packed goods (g/cm^3); the path along the beam is the depth of
the load. Carton walls and other surfaces parallel to the beam are crossed edge-on
and show as faint lines, as on real scans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from xray.simulate.canvas import Canvas, cylinder_profile, disc_profile

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Lot:
    """Where one category's goods go: columns [x0, x1), resting on y_floor, up to y_top."""

    x0: int
    x1: int
    y_floor: int
    y_top: int
    depth_cm: float
    fill: float = 1.0  # fraction of the available height to load
    dense: bool = False  # cartons tile each pallet without a gap at its end (real, tightly packed loads)
    # Dense, and the categories that `dense` still leaves half empty packed as real ones ship: tyres
    # laced (every other tyre along the beam half a tyre further along), timber dead-stacked, reels
    # and rifle crates to the roof.
    packed: bool = False


def _blob_texture(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int], amount: float) -> np.ndarray:
    """Smooth random variation around 1 (folded cloth, produce, loose fill)."""
    small = 1 + amount * rng.standard_normal((max(cells[0], 2), max(cells[1], 2))).astype(np.float32)
    return cv2.resize(small, (max(w, 1), max(h, 1)), interpolation=cv2.INTER_CUBIC)


def _pallet(canvas: Canvas, x0: int, x1: int, y_floor: int, depth_cm: float) -> int:
    """A wooden pallet (144 mm) under [x0, x1); returns the new floor row on top of it."""
    px = canvas.px
    top = y_floor - px(144)
    canvas.add_path("carbon", x0, top, x1, top + px(22), depth_cm * 0.75, density=0.55)
    canvas.add_path("carbon", x0, y_floor - px(22), x1, y_floor, depth_cm * 0.5, density=0.55)
    bw = px(100)
    for bx in (x0, (x0 + x1 - bw) // 2, x1 - bw):
        canvas.add_path("carbon", bx, top + px(22), bx + bw, y_floor - px(22), depth_cm * 0.3, density=0.55)
    return top


def _units_along(rng: np.random.Generator, x0: int, x1: int, unit: int, gap: tuple[int, int] = (0, 3)):
    """Consecutive [a, b) spans of about `unit` pixels from x0 to x1."""
    a = x0
    while a < x1 - 4 and (a == x0 or a + unit // 2 < x1):  # a lot always gets at least one unit
        b = min(a + unit, x1)
        yield a, b
        a = b + int(rng.integers(gap[0], gap[1] + 1))


def _carton_column(
    canvas: Canvas,
    rng: np.random.Generator,
    a: int,
    b: int,
    floor: int,
    top: int,
    *,
    depth_cm: float,
    carton_h: int,
    density: float,
    material: str = "organic",
    texture: Callable[[int, int], np.ndarray] | None = None,
    wall: float = 0.12,
) -> int:
    """Cartons stacked from `floor` up to `top` in the columns [a, b); returns the top row."""
    y = floor
    while y - carton_h >= top:
        c0 = y - carton_h
        fill = density * depth_cm
        canvas.add(material, a, c0, b, y, fill * texture(y - c0, b - a) if texture else fill)
        # Carton walls parallel to the beam (edge-on), partly misaligned along the depth.
        canvas.add_path("organic", a, c0, a + 1, y, depth_cm * wall, density=0.6)
        canvas.add_path("organic", a, c0, b, c0 + 1, depth_cm * wall, density=0.6)
        y = c0
    return y


def _stacked_cartons(
    canvas: Canvas,
    rng: np.random.Generator,
    lot: Lot,
    *,
    pallet_mm: float,
    carton_mm: tuple,
    density: tuple[float, float],
    material: str = "organic",
    palletised: bool = True,
    texture=None,
    per_unit: Callable | None = None,
) -> list[Box]:
    """Pallet positions along the lot, each with a stack of cartons; one box for the lot."""
    px = canvas.px
    height = lot.y_floor - lot.y_top
    xs, ys = [], []
    for a, b in _units_along(rng, lot.x0, lot.x1, px(pallet_mm), (0, px(40))):
        floor = _pallet(canvas, a, b, lot.y_floor, lot.depth_cm) if palletised else lot.y_floor
        frac = rng.uniform(0.8, 1.0)
        if lot.dense:  # real loads are stacked to near the roof (same draw, a narrower range)
            frac = 0.96 + (frac - 0.8) * 0.2
        stack_top = lot.y_floor - int(height * lot.fill * frac)
        ch = px(rng.uniform(*carton_mm[1]) if isinstance(carton_mm[1], tuple) else carton_mm[1])
        cw = px(carton_mm[0])
        if lot.dense:  # as many whole cartons as fit, stretched to the pallet's length and the stack's height
            cw = max((b - a) // max(int(round((b - a) / max(cw, 1))), 1), 1)
            ch = max((floor - stack_top) // max(int(round((floor - stack_top) / max(ch, 1))), 1), 1)
        top = floor
        for ca, cb in _units_along(rng, a, b, cw, (0, 0)):
            d = rng.uniform(*density)
            if lot.dense and d < 0.2:  # light cartons packed several deep across the container
                d *= 2
            t = _carton_column(
                canvas,
                rng,
                ca,
                cb,
                floor,
                stack_top,
                depth_cm=lot.depth_cm,
                carton_h=ch,
                density=d,
                material=material,
                texture=texture and (lambda h, w: texture(rng, h, w)),
            )
            if per_unit is not None:
                per_unit(ca, cb, t, floor)
            top = min(top, t)
        if top < floor:
            xs += [a, b]
            ys += [top, lot.y_floor]
    if not xs:
        return []
    return [(min(xs), min(ys), max(xs), max(ys))]


def draw_tobacco(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Master cases of cigarettes (50 cartons each) on pallets: a very regular grid."""
    px = canvas.px

    def cartons(a, b, top, floor):
        # The ten-pack cartons inside each case: fine regular lines every ~66 mm.
        for y in range(floor - px(66), top, -px(66)):
            canvas.add_path("organic", a, y, b, y + 1, lot.depth_cm * 0.05, density=0.6)

    return _stacked_cartons(
        canvas, rng, lot, pallet_mm=1200, carton_mm=(560, (290, 340)), density=(0.19, 0.26), per_unit=cartons
    )


def draw_textiles(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Compressed bales and cartons of garments: irregular sizes, soft density variation, steel straps."""
    px = canvas.px

    def straps(a, b, top, floor):
        for y in range(floor - px(rng.uniform(100, 200)), top, -px(rng.uniform(250, 450))):
            canvas.add_path("iron", a, y, b, y + 1, lot.depth_cm * 0.004)

    def tex(r: np.random.Generator, h: int, w: int) -> np.ndarray:
        return _blob_texture(r, h, w, (h // 25 + 2, w // 25 + 2), 0.18)

    return _stacked_cartons(
        canvas,
        rng,
        lot,
        pallet_mm=rng.uniform(700, 1100),
        carton_mm=(rng.uniform(400, 800), (300, 600)),
        density=(0.25, 0.5),
        palletised=bool(rng.random() < 0.3),
        texture=tex,
        per_unit=straps,
    )


def draw_electronics(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Cartons each holding a device: steel chassis outline, boards and parts in foam."""
    px = canvas.px
    n_z = max(int(lot.depth_cm / rng.uniform(40, 70)), 1)  # devices along the beam

    def device(a, b, top, floor):
        ch = px(rng.uniform(300, 500))
        for y in range(floor, top + ch // 2, -ch):
            m = max((b - a) // 8, 1)
            d0, d1, e0, e1 = a + m, b - m, y - ch + m, y - m
            if d1 - d0 < 4 or e1 - e0 < 4:
                continue
            canvas.add_path("iron", d0, e0, d1, e1, n_z * 0.15)  # chassis side panels
            canvas.add_path("iron", d0, e0, d1, e0 + 1, n_z * 2.0)  # top/bottom panels edge-on
            canvas.add_path("iron", d0, e1 - 1, d1, e1, n_z * 2.0)
            for _ in range(int(rng.integers(2, 6))):  # transformers, drives, heat sinks
                w, h = int(rng.integers(3, max(4, (d1 - d0) // 3))), int(rng.integers(3, max(4, (e1 - e0) // 3)))
                u, v = int(rng.integers(d0, max(d0 + 1, d1 - w))), int(rng.integers(e0, max(e0 + 1, e1 - h)))
                canvas.add_path("iron", u, v, u + w, v + h, n_z * rng.uniform(0.5, 3.0))

    return _stacked_cartons(
        canvas,
        rng,
        lot,
        pallet_mm=1200,
        carton_mm=(rng.uniform(450, 650), (350, 550)),
        density=(0.05, 0.12),
        per_unit=device,
    )


def draw_machinery(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Machines in wooden crates (castings, shafts, motors, frames) or crates of metal parts."""
    px = canvas.px
    boxes = []
    height = lot.y_floor - lot.y_top
    gaps = (px(10), px(60)) if lot.dense else (px(50), px(300))  # dense: crates packed end to end
    for a, b in _units_along(rng, lot.x0, lot.x1, px(rng.uniform(1000, 2500)), gaps):
        frac = rng.uniform(0.4, 0.95)
        if lot.dense:  # crates stacked two high, to near the roof (same draw, a narrower range)
            frac = 0.8 + (frac - 0.4) / 0.55 * 0.15
        top = lot.y_floor - int(height * lot.fill * frac)
        canvas.add_path("carbon", a, top, b, lot.y_floor, 2 * 2.0, density=0.55)  # crate sides
        if lot.dense:
            # Crates two across the container, each machine filling its crate: housings, frames
            # and bracing over most of the crate's area, seen through both crates (the default
            # simulator draws one small machine in a mostly empty crate).
            m = max((b - a) // 12, 1)
            body = np.zeros((lot.y_floor - top, b - a), np.float32)
            mh, mw = body.shape
            body[mh // 10 :, m : mw - m] = 1.0
            canvas.add_path("iron", a, top, b, lot.y_floor, body * lot.depth_cm * 0.015)
            canvas.add_path("carbon", a, top, b, lot.y_floor, lot.depth_cm * 0.5, density=0.55)  # bracing, pallets
        canvas.add_path("carbon", a, top, b, top + 2, lot.depth_cm * 0.8, density=0.55)  # crate lid edge-on
        canvas.add_path("carbon", a, top, a + 2, lot.y_floor, lot.depth_cm * 0.8, density=0.55)
        canvas.add_path("carbon", b - 2, top, b, lot.y_floor, lot.depth_cm * 0.8, density=0.55)
        if rng.random() < 0.3:  # boxes of bolts, fittings, castings: dense and uniform
            lvl = lot.y_floor - int((lot.y_floor - top) * rng.uniform(0.3, 0.7))
            canvas.add_path("iron", a + 3, lvl, b - 3, lot.y_floor, lot.depth_cm * rng.uniform(0.05, 0.15))
        else:
            w, h = b - a, lot.y_floor - top
            for _ in range(int(rng.integers(4, 10))):
                kind = rng.random()
                u0 = int(rng.integers(a + 3, max(a + 4, b - w // 4)))
                v1 = lot.y_floor - int(rng.integers(0, max(1, h // 3)))
                if kind < 0.4:  # castings and blocks
                    bw, bh = int(w * rng.uniform(0.15, 0.5)), int(h * rng.uniform(0.2, 0.7))
                    canvas.add_path("iron", u0, v1 - bh, min(u0 + bw, b - 3), v1, rng.uniform(3, 25))
                elif kind < 0.7:  # motors and drums: cylinders along the beam
                    r = int(min(w, h) * rng.uniform(0.1, 0.3)) + 2
                    m = disc_profile(r)
                    canvas.add_path("iron", u0, v1 - m.shape[0], u0 + m.shape[1], v1, rng.uniform(5, 30) * m)
                else:  # frames and shafts: beams crossed edge-on
                    bl = int(w * rng.uniform(0.3, 0.9))
                    canvas.add_path("iron", u0, v1 - 3, min(u0 + bl, b - 3), v1, rng.uniform(10, 60))
        boxes.append((a, top, b, lot.y_floor))
    return boxes


def _car(canvas: Canvas, rng: np.random.Generator, x0: int, floor: int, length_mm: float, depth_cm: float) -> Box:
    """A passenger car in side view: body shell, glass, engine, seats, wheels."""
    px = canvas.px
    L, H = px(length_mm), px(rng.uniform(1400, 1650))
    r_w = px(rng.uniform(300, 340))
    body_bot = floor - px(180)
    belt = floor - int(H * 0.55)
    roof = floor - H
    hood = x0 + int(L * rng.uniform(0.22, 0.3))
    trunk = x0 + L - int(L * rng.uniform(0.12, 0.22))
    shell = np.zeros((floor - roof, L), np.float32)
    poly_body = np.array(
        [
            [0, body_bot - roof],
            [0, belt - roof + px(80)],
            [hood - x0, belt - roof],
            [hood - x0 + int(L * 0.12), 0],
            [trunk - x0 - int(L * 0.08), 0],
            [trunk - x0, belt - roof],
            [L - 1, belt - roof + px(60)],
            [L - 1, body_bot - roof],
        ],
        np.int32,
    )
    cv2.fillPoly(shell, [poly_body], 1.0)
    canvas.add_path("iron", x0, roof, x0 + L, floor, 2 * 0.2 * shell)  # door skins, beams, trim: both sides
    outline = np.zeros_like(shell)
    cv2.polylines(outline, [poly_body], True, 1.0, 1)
    canvas.add_path("iron", x0, roof, x0 + L, floor, 0.25 * 170 * outline)  # roof, sills: crossed edge-on
    glass = np.zeros_like(shell)
    cv2.fillPoly(
        glass,
        [
            np.array(
                [
                    [hood - x0 + px(60), belt - roof - 2],
                    [hood - x0 + int(L * 0.12), px(60)],
                    [trunk - x0 - int(L * 0.08), px(60)],
                    [trunk - x0 - px(40), belt - roof - 2],
                ],
                np.int32,
            )
        ],
        1.0,
    )
    canvas.add_path("aluminium", x0, roof, x0 + L, floor, 2 * 0.4 * glass)
    canvas.add_path("iron", x0 + px(40), body_bot - px(30), x0 + L - px(40), body_bot, 0.6 * 170)  # floor pan
    eng_w, eng_h = int((hood - x0) * 0.7), int((belt - body_bot) * -0.8)
    canvas.add_path(
        "iron", x0 + px(120), belt + px(60), x0 + px(120) + eng_w, belt + px(60) + eng_h, rng.uniform(15, 30)
    )  # engine block and gearbox
    for sx in (hood + px(350), hood + px(1150)):  # seats: foam and steel frames
        canvas.add_path("organic", sx, belt - px(350), sx + px(500), body_bot - px(60), 120, density=0.08)
        canvas.add_path("iron", sx, body_bot - px(120), sx + px(500), body_bot - px(100), 2 * 1.5)
    wheel = disc_profile(r_w, r_w * 0.62)
    rim = disc_profile(r_w * 0.62)
    for wx in (x0 + int(L * 0.17), x0 + L - int(L * 0.18)):
        canvas.add_path(
            "carbon",
            wx - r_w,
            floor - 2 * r_w,
            wx - r_w + wheel.shape[1],
            floor - 2 * r_w + wheel.shape[0],
            2 * 20.0 * wheel,
            density=1.15,
        )
        canvas.add_path(
            "aluminium",
            wx - r_w,
            floor - 2 * r_w,
            wx - r_w + rim.shape[1],
            floor - 2 * r_w + rim.shape[0],
            2 * 2.0 * rim,
        )
        canvas.add_path("iron", wx - px(80), floor - r_w - px(80), wx + px(80), floor - r_w + px(80), 2 * 2.5)
    return (x0, roof, x0 + L, floor)


def draw_vehicles(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Passenger cars one behind the other, sometimes two levels on a rack; one box per car."""
    px = canvas.px
    boxes = []
    x = lot.x0 + px(rng.uniform(50, 300))
    two_levels = (lot.y_floor - lot.y_top) > px(2300) and rng.random() < 0.3
    while x + px(3800) <= lot.x1:
        length = rng.uniform(3800, min(4900, (lot.x1 - x) * canvas.pixel_mm))
        boxes.append(_car(canvas, rng, x, lot.y_floor, length, lot.depth_cm))
        if two_levels:
            deck = lot.y_floor - px(1250)
            canvas.add_path("iron", x, deck, x + px(length), deck + 2, 30.0)
        x += px(length) + px(rng.uniform(150, 600))
    return boxes


def draw_tyres(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """New tyres: stacks lying flat or rows standing on the tread; rubber with steel belts and beads."""
    px = canvas.px
    R, r = rng.uniform(300, 400), rng.uniform(190, 240)
    w_tyre = rng.uniform(180, 260)
    height = lot.y_floor - lot.y_top
    top_all, x_end = lot.y_floor, lot.x0
    if rng.random() < 0.5:  # stacks lying flat: a chord profile through the annulus, repeated up the stack
        n_z = max(int(lot.depth_cm * 10 / (2 * R)), 1)
        xs = (np.arange(px(2 * R)) + 0.5) * canvas.pixel_mm - R
        chord = 2 * (np.sqrt(np.clip(R * R - xs * xs, 0, None)) - np.sqrt(np.clip(r * r - xs * xs, 0, None))) / 10
        prof = chord.astype(np.float32)[None, :]
        for a, _ in _units_along(rng, lot.x0, lot.x1, px(2 * R), (0, px(30))):
            top = lot.y_floor - int(height * lot.fill * rng.uniform(0.85, 1.0))
            y = lot.y_floor
            while y - px(w_tyre) >= top:
                b = min(a + prof.shape[1], lot.x1)
                canvas.add_path("carbon", a, y - px(w_tyre), b, y, n_z * prof[:, : b - a], density=1.15)
                canvas.add_path("iron", a, y - px(w_tyre), b, y - px(w_tyre) + 1, n_z * 2 * np.pi * r / 10 * 0.02)
                y -= px(w_tyre)
            top_all, x_end = min(top_all, y), max(x_end, a + prof.shape[1])
    else:  # standing rows: annuli seen along the axis, one tyre width per tyre along the beam
        n_z = max(int(lot.depth_cm * 10 / w_tyre * 0.9), 1)
        ring = disc_profile(px(R), px(r))
        belt = disc_profile(px(R) - 1, px(R) - 4)
        rows = max(int(height * lot.fill) // ring.shape[0], 1)
        # Laced (packed): every other tyre along the beam sits half a tyre further along, over the
        # holes of the one before: the holes seen through the load shrink from half to a fifth.
        layers = [(0, n_z)]
        if lot.packed:
            layers = [(0, (n_z + 1) // 2), (ring.shape[1] // 2, n_z // 2)]
        for a, _ in _units_along(rng, lot.x0, lot.x1, ring.shape[1], (0, px(20))):
            if a + ring.shape[1] > lot.x1:
                break
            for dx, n_z_ in layers:
                a_ = a + dx
                if n_z_ < 1 or a_ + ring.shape[1] > lot.x1:
                    continue
                for k in range(rows):
                    y1 = lot.y_floor - k * ring.shape[0]
                    canvas.add_path(
                        "carbon",
                        a_,
                        y1 - ring.shape[0],
                        a_ + ring.shape[1],
                        y1,
                        n_z_ * w_tyre / 10 * 0.35 * ring,
                        density=1.15,
                    )
                    canvas.add_path(
                        "iron",
                        a_ + 1,
                        y1 - ring.shape[0] + 1,
                        a_ + 1 + belt.shape[1],
                        y1 - ring.shape[0] + 1 + belt.shape[0],
                        n_z_ * 0.15 * belt,
                    )
                    top_all, x_end = min(top_all, y1 - ring.shape[0]), max(x_end, a_ + ring.shape[1])
    return [(lot.x0, top_all, x_end, lot.y_floor)] if x_end > lot.x0 else []


def draw_beverages(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Bottles or cans standing in layers with slip sheets, on pallets."""
    px = canvas.px
    glass = rng.random() < 0.5
    dia = rng.uniform(60, 85) if glass else rng.uniform(55, 68)
    layer = rng.uniform(230, 320) if glass else rng.uniform(115, 170)
    n_z = max(int(lot.depth_cm * 10 / dia), 1)
    cyl = cylinder_profile(max(px(dia), 2)) * (dia / 10)  # chord (cm) across one container

    def bottles(a, b, top, floor):
        reps = int(np.ceil((b - a) / cyl.shape[1]))
        row = np.tile(cyl, (1, reps))[:, : b - a]
        y = floor
        while y - px(layer) >= top:
            liquid_top = y - int(px(layer) * (0.72 if glass else 0.92))
            canvas.add_path("organic", a, liquid_top, b, y, n_z * row)
            canvas.add_path("aluminium", a, y - px(layer), b, y, n_z * (0.35 if glass else 0.02) * (row > 0))
            canvas.add_path("organic", a, y - px(layer), b, y - px(layer) + 1, lot.depth_cm * 0.1, density=0.6)
            y -= px(layer)

    return _stacked_cartons(
        canvas, rng, lot, pallet_mm=1200, carton_mm=(1200, (1000, 1400)), density=(0.0, 0.0), per_unit=bottles
    )


def draw_fruit_veg(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Produce in ventilated cartons on pallets: lumpy, moderate density, air gaps."""

    def tex(r: np.random.Generator, h: int, w: int) -> np.ndarray:
        return _blob_texture(r, h, w, (h // 16 + 2, w // 16 + 2), 0.25)

    return _stacked_cartons(
        canvas, rng, lot, pallet_mm=1200, carton_mm=(rng.uniform(380, 600), (200, 300)), density=(0.3, 0.5), texture=tex
    )


def draw_frozen_food(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Frozen meat or fish blocks in flat cartons: dense and very uniform."""
    return _stacked_cartons(
        canvas,
        rng,
        lot,
        pallet_mm=1200,
        carton_mm=(rng.uniform(500, 650), (120, 180)),
        density=(0.6, 0.8),
        palletised=bool(rng.random() < 0.6),
    )


def draw_bagged_bulk(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Sacks (coffee, sugar, grain, feed) lying flat in brick-bonded layers: pillow shapes."""
    px = canvas.px
    sack_l, sack_h = px(rng.uniform(750, 950)), px(rng.uniform(130, 180))
    u = (np.arange(sack_l) + 0.5) / sack_l * 2 - 1
    v = (np.arange(sack_h) + 0.5) / sack_h * 2 - 1
    pillow = (np.sqrt(np.clip(1 - u**8, 0, 1))[None, :] * np.sqrt(np.clip(1 - v**2, 0, 1))[:, None]).astype(np.float32)
    density = rng.uniform(0.5, 0.7)
    height = lot.y_floor - lot.y_top
    top = lot.y_floor - int(height * lot.fill * rng.uniform(0.75, 1.0))
    y, k, x_end = lot.y_floor, 0, lot.x0
    while y - sack_h >= top:
        x = lot.x0 - (sack_l // 2 if k % 2 else 0)  # brick bond: odd layers start with half a sack
        while x + sack_l // 2 < lot.x1:
            a, b = max(x, lot.x0), min(x + sack_l, lot.x1)
            canvas.add_path("organic", a, y - sack_h, b, y, lot.depth_cm * density * pillow[:, a - x : b - x])
            x_end = max(x_end, b)
            x += sack_l
        y -= int(sack_h * 0.8)  # sacks settle into each other
        k += 1
    return [(lot.x0, y, x_end, lot.y_floor)] if y < lot.y_floor else []


def draw_furniture_wood(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Sawn timber bundles (boards with gaps) or flat-pack furniture cartons (panels, fittings)."""
    px = canvas.px
    if rng.random() < 0.5:
        boxes_x, top_all = [], lot.y_floor
        height = lot.y_floor - lot.y_top
        ends = (px(10), px(40)) if lot.packed else (px(50), px(200))  # packed: bundles end to end
        for a, b in _units_along(rng, lot.x0, lot.x1, px(rng.uniform(2000, 4000)), ends):
            frac = rng.uniform(0.5, 0.95)
            if lot.packed:  # same draw, to the roof
                frac = 0.93 + (frac - 0.5) / 0.45 * 0.07
            elif lot.dense:  # bundles stacked to near the roof (same draw, a narrower range)
                frac = 0.85 + (frac - 0.5) / 3
            top = lot.y_floor - int(height * lot.fill * frac)
            board = px(rng.uniform(25, 50))
            y = lot.y_floor - px(80)
            canvas.add_path("carbon", a, y, b, lot.y_floor, lot.depth_cm * 0.3, density=0.5)  # bearers
            while y - board >= top:
                canvas.add_path(
                    "carbon", a, y - board, b, y, lot.depth_cm * rng.uniform(0.8, 0.95), density=rng.uniform(0.45, 0.65)
                )
                gap = rng.uniform(3, 25)
                y -= board + max(1, px(gap / 8 if lot.packed else gap))  # packed: boards dead-stacked
            boxes_x += [a, b]
            top_all = min(top_all, y)
        return [(min(boxes_x), top_all, max(boxes_x), lot.y_floor)] if boxes_x else []

    def panels(a, b, top, floor):
        for y in range(floor - px(18), top, -px(rng.uniform(18, 40))):
            canvas.add_path("carbon", a, y, b, y + 1, lot.depth_cm * 0.6, density=0.65)
        for _ in range(int(rng.integers(0, 3))):  # bags of hinges and screws
            u, v = int(rng.integers(a, max(a + 1, b - 6))), int(rng.integers(top, max(top + 1, floor - 6)))
            canvas.add_path("iron", u, v, u + 6, v + 6, 1.5)

    return _stacked_cartons(
        canvas,
        rng,
        lot,
        pallet_mm=rng.uniform(1200, 2000),
        carton_mm=(rng.uniform(600, 2000), (150, 400)),
        density=(0.25, 0.45),
        material="carbon",
        palletised=False,
        per_unit=panels,
    )


def draw_paper(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Reels of paper standing on end (solid cylinders with a core) or reams on pallets."""
    px = canvas.px
    if rng.random() < 0.6:
        dia = rng.uniform(900, 1300)
        n_z = max(int(lot.depth_cm * 10 / dia), 1)
        prof = cylinder_profile(px(dia)) * (dia / 10)
        core = cylinder_profile(px(120)) * 12.0
        c0 = (prof.shape[1] - core.shape[1]) // 2
        prof = prof.copy()
        prof[:, c0 : c0 + core.shape[1]] -= core
        height = lot.y_floor - lot.y_top
        xs, top_all = [], lot.y_floor
        for a, _ in _units_along(rng, lot.x0, lot.x1, prof.shape[1], (0, px(40))):
            if a + prof.shape[1] > lot.x1:
                break
            reel_h = px(rng.uniform(700, 1400))
            y, top = lot.y_floor, lot.y_floor - int(height * lot.fill)
            if lot.packed:  # whole reels to the roof: no taller than drawn, at least half as tall
                n_high = int(np.ceil((y - top) / max(reel_h, 1)))
                reel_h = max((y - top) // max(n_high, 1), 1)
            while y - reel_h >= top:
                canvas.add_path("organic", a, y - reel_h, a + prof.shape[1], y, n_z * prof, density=0.8)
                y -= reel_h
            xs += [a, a + prof.shape[1]]
            top_all = min(top_all, y)
        return [(min(xs), top_all, max(xs), lot.y_floor)] if xs and top_all < lot.y_floor else []
    return _stacked_cartons(canvas, rng, lot, pallet_mm=1000, carton_mm=(500, (250, 300)), density=(0.7, 0.85))


def draw_firearms(canvas: Canvas, rng: np.random.Generator, lot: Lot) -> list[Box]:
    """Rifles in wooden crates: long steel barrels, receivers, wooden stocks."""
    px = canvas.px
    n_z = max(int(lot.depth_cm / rng.uniform(8, 15)), 1)  # rifles side by side along the beam
    crate_l, crate_h = px(rng.uniform(1000, 1250)), px(rng.uniform(300, 420))
    height = lot.y_floor - lot.y_top
    frac = rng.uniform(0.4, 1.0)
    if lot.packed:  # crates stacked to the roof (same draw, a narrower range)
        frac = 0.9 + (frac - 0.4) / 6
    top = lot.y_floor - int(height * lot.fill * frac)
    x_end, y = lot.x0, lot.y_floor
    while y - crate_h >= top:
        for a, b in _units_along(rng, lot.x0, lot.x1, crate_l, (0, px(20))):
            if b - a < crate_l * 0.9:
                break
            canvas.add_path("carbon", a, y - crate_h, b, y, 2 * 2.0 + lot.depth_cm * 0.05, density=0.55)
            canvas.add_path("carbon", a, y - crate_h, b, y - crate_h + 1, lot.depth_cm * 0.6, density=0.55)
            for k in range(2):  # two layers of rifles per crate
                ry = y - crate_h + (k + 1) * crate_h // 3
                flip = k % 2 == 1
                brl = (a + px(60), a + px(60) + int((b - a) * 0.55))
                rec = (brl[1], brl[1] + px(220))
                stk = (rec[1], b - px(40))
                if flip:
                    brl, rec, stk = [(a + b - s1, a + b - s0) for s0, s1 in (brl, rec, stk)]
                canvas.add_path("iron", brl[0], ry - 2, brl[1], ry + 2, n_z * 1.2)
                canvas.add_path("iron", rec[0], ry - px(30), rec[1], ry + px(40), n_z * 2.5)
                canvas.add_path("carbon", stk[0], ry - px(20), stk[1], ry + px(50), n_z * 4.0, density=0.6)
            x_end = max(x_end, b)
        y -= crate_h
    return [(lot.x0, y, x_end, lot.y_floor)] if x_end > lot.x0 else []


DRAWERS: dict[str, Callable[[Canvas, np.random.Generator, Lot], list[Box]]] = {
    "tobacco": draw_tobacco,
    "vehicles": draw_vehicles,
    "tyres": draw_tyres,
    "beverages": draw_beverages,
    "textiles": draw_textiles,
    "electronics": draw_electronics,
    "machinery": draw_machinery,
    "fruit_veg": draw_fruit_veg,
    "frozen_food": draw_frozen_food,
    "bagged_bulk": draw_bagged_bulk,
    "furniture_wood": draw_furniture_wood,
    "paper": draw_paper,
    "firearms": draw_firearms,
}
