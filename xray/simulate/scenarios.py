"""Scenarios: what is loaded, what is declared, and the ground truth that links them.

A scan is a pure function of its seed: `simulate_scan(seed)` plans a scenario,
loads the container, renders it and writes the manifest the declarant would file.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from xray.errors import ConfigError
from xray.goods import GoodsTable, default_goods_table
from xray.manifest import Manifest, ManifestLine
from xray.simulate import export
from xray.simulate.artifacts import apply_artifacts, map_column
from xray.simulate.canvas import Canvas
from xray.simulate.container import ContainerSpec, Hold, canvas_size, container_bounds, draw_container
from xray.simulate.goods import DRAWERS, Box, Lot
from xray.simulate.profile import ScannerProfile, ScanSettings, load_profile
from xray.simulate.realism import add_load_texture, draw_structure
from xray.simulate.render import ScannerModel, render

SCENARIO_KINDS = (
    "clean",
    "empty",
    "concealment",
    "substitution",
    "undeclared",
    "missing",
    "false_empty",
    "empty_declared_loaded",
)
MATCHING = ("clean", "empty")
SIZES = ("20ft", "40ft", "mixed")


@lru_cache(maxsize=1)
def scenario_config() -> dict:
    return yaml.safe_load(resources.files("xray.simulate").joinpath("scenarios.yaml").read_text())


@dataclass
class ScenePlan:
    """What goes into one container and what its manifest says."""

    scenario: str
    spec: ContainerSpec
    loaded: list[str]  # categories loaded in the open, in loading order (front to doors)
    declared: list[str]
    hidden: str | None = None  # category concealed behind the declared goods
    flip: bool = False  # doors on the left


@dataclass
class SimulatedScan:
    """A rendered scan with its manifest and ground truth."""

    scan_id: str
    seed: int
    images: np.ndarray  # uint16 (2, H, W): high, low energy transmission; a profile's export otherwise
    energies: tuple[str, ...]
    pixel_mm: float  # column pitch (and row pitch unless pixel_mm_rows says otherwise)
    boxes: list[tuple[str, Box]]  # (category, (x1, y1, x2, y2)) in pixels
    manifest: Manifest
    plan: ScenePlan
    truth: dict = field(default_factory=dict)
    # Set for profiled scans: images are then uint16 (E, H, W), uint8 (E, H, W) or BGR uint8 (H, W, 3).
    profile: str | None = None
    settings: ScanSettings | None = None
    pixel_mm_rows: float | None = None
    hold_box: Box | None = None  # the cargo space (inside the walls) in the exported grid

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """(row, column) pitch in mm."""
        return (self.pixel_mm if self.pixel_mm_rows is None else self.pixel_mm_rows, self.pixel_mm)

    @property
    def jpeg_quality(self) -> int | None:
        return None if self.settings is None else self.settings.jpeg_quality


def _choice(rng: np.random.Generator, weights: dict[str, float], exclude=()) -> str:
    keys = [k for k in weights if k not in exclude]
    p = np.array([weights[k] for k in keys], dtype=float)
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def plan_scene(
    rng: np.random.Generator,
    *,
    size: str = "mixed",
    mismatch_rate: float = 0.3,
    scenario: str | None = None,
    categories: list[str] | None = None,
    table: GoodsTable | None = None,
) -> ScenePlan:
    """Draw a scenario and the categories it loads and declares.

    `categories` forces what a clean scan loads (for galleries and tests).
    """
    if size not in SIZES:
        raise ConfigError(f"container size must be one of {SIZES}, got {size!r}")
    if not 0.0 <= mismatch_rate <= 1.0:
        raise ConfigError(f"mismatch rate must be in [0, 1], got {mismatch_rate}")
    if scenario is not None and scenario not in SCENARIO_KINDS:
        raise ConfigError(f"scenario must be one of {SCENARIO_KINDS}, got {scenario!r}")
    table = table or default_goods_table()
    cfg = scenario_config()
    if scenario is None and categories is None:
        kinds = cfg["mismatch_kinds"] if rng.random() < mismatch_rate else cfg["match_kinds"]
        scenario = _choice(rng, kinds)
    weights = cfg["category_weights"]
    open_weights = {k: v for k, v in weights.items() if k != "firearms"}

    def pick(n: int, exclude=()) -> list[str]:
        cats: list[str] = []
        for _ in range(n):
            cats.append(_choice(rng, open_weights, exclude=list(exclude) + cats))
        return cats

    n = int(rng.choice([1, 1, 1, 2, 2, 3]))
    hidden = None
    if categories is not None:
        unknown = [c for c in categories if c not in table.keys]
        if unknown or scenario not in ("clean", None):
            raise ConfigError(f"forced categories need a clean scenario and known categories, got {categories}")
        scenario, loaded, declared = "clean", list(categories), list(categories)
    elif scenario in ("clean", "concealment"):
        loaded = pick(n, exclude=("tobacco",) if scenario == "concealment" else ())
        declared = list(loaded)
        if scenario == "concealment":
            hidden = _choice(rng, cfg["hidden"])
    elif scenario == "empty":
        loaded, declared = [], []
    elif scenario == "substitution":
        a = pick(1)[0]
        b = _choice(rng, open_weights, exclude=[k for k in table.keys if table.compatible(a, k)])
        loaded, declared = [b], [a]
    elif scenario == "undeclared":
        declared = pick(max(n - 1, 1))
        extra = _choice(rng, weights, exclude=[k for k in table.keys if any(table.compatible(d, k) for d in declared)])
        loaded = declared + [extra]
    elif scenario == "missing":
        loaded = pick(max(n - 1, 1))
        gone = _choice(
            rng, open_weights, exclude=[k for k in table.keys if any(table.compatible(c, k) for c in loaded)]
        )
        declared = loaded + [gone]
    elif scenario == "false_empty":
        loaded, declared = pick(n), []
    else:  # empty_declared_loaded
        loaded, declared = [], pick(n)
    if size == "mixed":
        size = "40ft" if rng.random() < 0.6 else "20ft"
    if size == "20ft" and "vehicles" in loaded and len(loaded) > 1:
        size = "40ft"  # a car and other goods do not fit a 20-ft box
    reefer_p = max([cfg["reefer_probability"].get(c, 0.0) for c in loaded + declared] or [0.0])
    spec = ContainerSpec(
        size=size, reefer=bool(rng.random() < reefer_p), truck=bool(rng.random() < cfg["truck_probability"])
    )
    order = list(rng.permutation(len(loaded)))
    assert scenario is not None  # drawn above when not given
    return ScenePlan(
        scenario=scenario,
        spec=spec,
        loaded=[loaded[i] for i in order],
        declared=declared,
        hidden=hidden,
        flip=bool(rng.random() < 0.5),
    )


def _load(
    canvas: Canvas, rng: np.random.Generator, hold: Hold, plan: ScenePlan, *, dense: bool = False, packed: bool = False
) -> list[tuple[str, Box]]:
    """Split the hold into lots, draw each category, then hide goods behind one of them.

    `dense` loads as real containers are: goods fill most of the length, the depth and
    the height (the default draws lighter, sparser loads; its draws are kept as they are).
    `packed` (with `dense`) also packs the categories that dense loads leave half empty (`Lot.packed`).
    """
    px = canvas.px
    boxes: list[tuple[str, Box]] = []
    if not plan.loaded:
        return boxes
    length = hold.x1 - hold.x0
    used = length * (1.0 if rng.random() < 0.6 else rng.uniform(0.5, 0.95))
    if dense:
        used = length * rng.uniform(0.95, 1.0)
    min_len = {c: px(4300) if c == "vehicles" else px(1500) for c in plan.loaded}
    share = rng.dirichlet(np.ones(len(plan.loaded)) * 3)
    spans = np.maximum(share * used, [min_len[c] for c in plan.loaded])
    spans = spans * min(1.0, length / spans.sum())
    x = hold.x0
    cover_depth = hold.depth_cm * (rng.uniform(0.45, 0.75) if plan.hidden else rng.uniform(0.55, 1.0))
    if dense:
        cover_depth = hold.depth_cm * (rng.uniform(0.6, 0.8) if plan.hidden else rng.uniform(0.85, 1.0))
    lots = []
    for cat, span in zip(plan.loaded, spans):
        gap = px(rng.uniform(50, 300))
        fill = float(rng.uniform(0.55, 1.0))
        if dense:
            gap, fill = px(rng.uniform(10, 80)), float(rng.uniform(0.92, 1.0))
        lot = Lot(
            x0=int(x),
            x1=int(min(x + span - gap, hold.x1)),
            y_floor=hold.y_floor,
            y_top=hold.y_roof,
            depth_cm=cover_depth,
            fill=fill,
            dense=dense,
            packed=packed,
        )
        found = DRAWERS[cat](canvas, rng, lot)
        boxes += [(cat, b) for b in found]
        lots.append((lot, found))
        x += span
    if plan.hidden:
        covers = [b for lot, found in lots for b in found if b[2] - b[0] > px(1400)]
        if covers:
            cx0, cy0, cx1, _ = covers[int(rng.integers(len(covers)))]
        else:  # nothing wide enough to hide behind: the goods stand in the open hold
            cx0, cy0, cx1 = hold.x0, hold.y_roof, hold.x1
        w = px(rng.uniform(1300, min(2600, (cx1 - cx0) * canvas.pixel_mm)))
        x0 = int(rng.integers(cx0, max(cx0 + 1, cx1 - w)))
        h = int((hold.y_floor - max(cy0, hold.y_roof)) * rng.uniform(0.5, 1.0))
        lot = Lot(
            x0=x0,
            x1=x0 + w,
            y_floor=hold.y_floor,
            y_top=hold.y_floor - h,
            depth_cm=hold.depth_cm - cover_depth,
            fill=1.0,
        )
        boxes += [(plan.hidden, b) for b in DRAWERS[plan.hidden](canvas, rng, lot)]
    return boxes


def iso6346_check_digit(code: str) -> int:
    """The check digit of a container number's first 10 characters (owner code + serial)."""
    values, v = {}, 10
    for ch in string.ascii_uppercase:
        if v % 11 == 0:  # multiples of 11 are skipped by the standard
            v += 1
        values[ch] = v
        v += 1
    total = sum((values[c] if c.isalpha() else int(c)) * 2**i for i, c in enumerate(code[:10]))
    return total % 11 % 10


def container_id(rng: np.random.Generator) -> str:
    """A random ISO 6346 container number with a valid check digit."""
    code = "".join(rng.choice(list(string.ascii_uppercase), 3)) + "U" + "".join(str(d) for d in rng.integers(0, 10, 6))
    return f"{code}{iso6346_check_digit(code)}"


def write_manifest(rng: np.random.Generator, plan: ScenePlan) -> Manifest:
    codes = scenario_config()["hs_codes"]
    lines = []
    for cat in plan.declared:
        code, desc = codes[cat][int(rng.integers(len(codes[cat])))]
        qty = int(rng.integers(1, 6)) if cat == "vehicles" else int(rng.integers(10, 2000))
        lines.append(
            ManifestLine(
                hs_code=code,
                description=desc,
                quantity=qty,
                unit="units" if cat == "vehicles" else "packages",
                weight_kg=float(round(rng.uniform(800, 12000), 0)),
            )
        )
    return Manifest(container_id=container_id(rng), lines=lines)


def simulate_scan(
    seed: int,
    *,
    scan_id: str | None = None,
    size: str = "mixed",
    mismatch_rate: float = 0.3,
    scenario: str | None = None,
    categories: list[str] | None = None,
    scanner: ScannerModel | None = None,
    profile: ScannerProfile | str | None = None,
) -> SimulatedScan:
    """Simulate one scan from its seed: plan, load, render, declare.

    Args:
        seed: The scan's seed; the same seed gives the same bytes.
        scan_id: Id to give the scan (default: derived from the seed).
        size: "20ft", "40ft" or "mixed".
        mismatch_rate: Probability that the scan's manifest disagrees with its contents.
        scenario: Force a scenario kind (see SCENARIO_KINDS).
        categories: Force the goods of a clean scan.
        scanner: The scanner model (default: 6/4 MV at 5 mm/pixel).
        profile: A scanner profile (or its name) that renders and exports the scan
            (`_simulate_profiled`); None keeps the default scanner's 16-bit output.
    """
    if profile is not None:
        if scanner is not None:
            raise ConfigError("give a scanner profile or a scanner model, not both")
        return _simulate_profiled(
            seed,
            load_profile(profile) if isinstance(profile, str) else profile,
            scan_id=scan_id,
            size=size,
            mismatch_rate=mismatch_rate,
            scenario=scenario,
            categories=categories,
        )
    scanner = scanner or ScannerModel()
    rng = np.random.default_rng(seed)
    for _ in range(20):
        plan = plan_scene(rng, size=size, mismatch_rate=mismatch_rate, scenario=scenario, categories=categories)
        h, w = canvas_size(plan.spec, scanner.pixel_mm)
        canvas = Canvas(height=h, width=w, pixel_mm=scanner.pixel_mm, spectra=scanner.spectra)
        hold = draw_container(canvas, plan.spec, rng)
        boxes = _load(canvas, rng, hold, plan)
        # The truth must hold: every planned category is in the picture. A layout that
        # left one out (too little room) is drawn again, from the same stream of seeds.
        if {c for c, _ in boxes} == set(plan.loaded) | ({plan.hidden} if plan.hidden else set()):
            break
    else:
        raise RuntimeError(f"seed {seed}: no layout fits the planned goods after 20 tries")
    images = render(canvas, scanner, rng)
    if plan.flip:
        images = np.ascontiguousarray(images[:, :, ::-1])
        boxes = [(c, (w - b[2], b[1], w - b[0], b[3])) for c, b in boxes]
    manifest = write_manifest(rng, plan)
    truth = _truth(plan, boxes)
    return SimulatedScan(
        scan_id=scan_id or f"sim{seed:020d}",
        seed=seed,
        images=images,
        energies=scanner.labels,
        pixel_mm=scanner.pixel_mm,
        boxes=boxes,
        manifest=manifest,
        plan=plan,
        truth=truth,
    )


def _truth(plan: ScenePlan, boxes: list[tuple[str, Box]]) -> dict:
    loaded = sorted({c for c, _ in boxes})
    declared = sorted(set(plan.declared))
    return {
        "scenario": plan.scenario,
        "mismatch": plan.scenario not in MATCHING,
        "declared": declared,
        "loaded": loaded,
        "undeclared": sorted(set(loaded) - set(declared)),
        "missing": sorted(set(declared) - set(loaded)),
        "container": {
            "size": plan.spec.size,
            "reefer": plan.spec.reefer,
            "truck": plan.spec.truck,
            "doors": "left" if plan.flip else "right",
        },
    }


# Spawn keys of the streams a profiled scan draws besides the scene's: profile settings
# and artifacts never shift the scene's draws, so the plan (and the truth) stay the seed's.
_SETTINGS_STREAM, _ARTIFACT_STREAM, _EXPORT_STREAM = 1, 2, 3
RENDER_PIXEL_MM = 5.0  # profiled scans are drawn at this pitch, then resampled to the profile's
_HOLD = "<hold>"  # a pseudo-box that follows the hold through the geometric steps
CROP_MARGIN_MM = 40  # kept around the container when an export is cropped to it


def _simulate_profiled(
    seed: int,
    profile: ScannerProfile,
    *,
    scan_id: str | None,
    size: str,
    mismatch_rate: float,
    scenario: str | None,
    categories: list[str] | None,
) -> SimulatedScan:
    """A scan as one scanner profile renders and exports it.

    Scene (plan, load) -> render at 5 mm -> artifacts -> crop -> doors flip -> resample to
    the drawn pitch -> 8-bit display (curve, colour, text) when the profile exports 8 bits.
    Boxes follow every geometric step.
    """
    rng = np.random.default_rng(seed)
    settings = profile.draw(np.random.default_rng([seed, _SETTINGS_STREAM]))
    base = ScannerModel()
    photons = {6.0: base.photons[0], 4.0: base.photons[1]}
    scanner = ScannerModel(
        energies_mv=profile.energies_mv,
        pixel_mm=RENDER_PIXEL_MM,
        photons=tuple(photons.get(e, base.photons[0]) * settings.photons for e in profile.energies_mv),
    )
    plan = plan_scene(rng, size=size, mismatch_rate=mismatch_rate, scenario=scenario, categories=categories)
    wanted = set(plan.loaded) | ({plan.hidden} if plan.hidden else set())
    for _ in range(20):  # the plan is kept (the truth is the seed's); only the layout is drawn again
        h, w = canvas_size(plan.spec, scanner.pixel_mm)
        canvas = Canvas(height=h, width=w, pixel_mm=scanner.pixel_mm, spectra=scanner.spectra)
        hold = draw_container(canvas, plan.spec, rng)
        if profile.scene.strong_structure:
            draw_structure(canvas, plan.spec, hold, rng)
        before = (canvas.organic.copy(), canvas.iron.copy())
        boxes = _load(canvas, rng, hold, plan, dense=profile.scene.dense_loads, packed=profile.scene.packed_loads)
        if {c for c, _ in boxes} == wanted:
            break
    else:
        raise RuntimeError(f"seed {seed}: no layout fits the planned goods after 20 tries")
    if profile.scene.dense_loads:
        add_load_texture(canvas, before, boxes, rng)
    t = render(canvas, scanner, rng).astype(np.float32) * np.float32(1 / 65535.0)
    boxes.append((_HOLD, (hold.x0, hold.y_roof, hold.x1, hold.y_floor)))  # carried through the geometry
    t, boxes, src = apply_artifacts(t, settings.artifacts, np.random.default_rng([seed, _ARTIFACT_STREAM]), boxes)
    if profile.crop_to_container:
        xf, xd, y_top, y_bot = container_bounds(plan.spec, canvas.pixel_mm)
        m = canvas.px(CROP_MARGIN_MM)
        t, boxes = export.crop(t, boxes, map_column(xf - m, src), y_top - m, map_column(xd + m, src), y_bot + m)
    w = t.shape[2]
    if plan.flip:
        t = np.ascontiguousarray(t[:, :, ::-1])
        boxes = [(c, (w - b[2], b[1], w - b[0], b[3])) for c, b in boxes]
    row_mm, col_mm = settings.pixel_mm
    t, boxes = export.resample(t, boxes, RENDER_PIXEL_MM / row_mm, RENDER_PIXEL_MM / col_mm)
    hold_box = next(b for c, b in boxes if c == _HOLD)
    boxes = [(c, b) for c, b in boxes if c != _HOLD]
    sid = scan_id or f"sim{seed:020d}"
    images: np.ndarray
    if profile.bit_depth == 16:
        images = np.rint(t * np.float32(65535.0)).astype(np.uint16)
    else:
        images = export.display_8bit(t, profile, settings)
        if profile.pseudo_colour:
            images = export.pseudo_colour(images[0], profile.palette)
        if settings.burned_text:  # the same caption on every picture of the scan
            if profile.pseudo_colour:
                images = export.burn_in(images, np.random.default_rng([seed, _EXPORT_STREAM]), sid)
            else:
                images = np.stack(
                    [export.burn_in(ch, np.random.default_rng([seed, _EXPORT_STREAM]), sid) for ch in images]
                )
    # The scene's boxes must all survive the export: the truth is exact in the exported grid.
    if {c for c, _ in boxes} != wanted:
        raise RuntimeError(f"seed {seed}: profile {profile.name} lost goods boxes in the export")
    manifest = write_manifest(rng, plan)
    truth = {**_truth(plan, boxes), "profile": profile.name}
    return SimulatedScan(
        scan_id=sid,
        seed=seed,
        images=images,
        energies=scanner.labels,
        pixel_mm=col_mm,
        boxes=boxes,
        manifest=manifest,
        plan=plan,
        truth=truth,
        profile=profile.name,
        settings=settings,
        pixel_mm_rows=row_mm,
        hold_box=hold_box,
    )
