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
from xray.simulate.canvas import Canvas
from xray.simulate.container import ContainerSpec, Hold, canvas_size, draw_container
from xray.simulate.goods import DRAWERS, Box, Lot
from xray.simulate.render import ScannerModel, render

SCENARIO_KINDS = ("clean", "empty", "concealment", "substitution", "undeclared", "missing", "false_empty",
                  "empty_declared_loaded")
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
    images: np.ndarray  # uint16 (2, H, W): high, low energy transmission
    energies: tuple[str, ...]
    pixel_mm: float
    boxes: list[tuple[str, Box]]  # (category, (x1, y1, x2, y2)) in pixels
    manifest: Manifest
    plan: ScenePlan
    truth: dict = field(default_factory=dict)


def _choice(rng: np.random.Generator, weights: dict[str, float], exclude=()) -> str:
    keys = [k for k in weights if k not in exclude]
    p = np.array([weights[k] for k in keys], dtype=float)
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def plan_scene(rng: np.random.Generator, *, size: str = "mixed", mismatch_rate: float = 0.3,
               scenario: str | None = None, categories: list[str] | None = None,
               table: GoodsTable | None = None) -> ScenePlan:
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
        gone = _choice(rng, open_weights, exclude=[k for k in table.keys if any(table.compatible(c, k) for c in loaded)])
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
    spec = ContainerSpec(size=size, reefer=bool(rng.random() < reefer_p), truck=bool(rng.random() < cfg["truck_probability"]))
    order = list(rng.permutation(len(loaded)))
    return ScenePlan(scenario=scenario, spec=spec, loaded=[loaded[i] for i in order], declared=declared,
                     hidden=hidden, flip=bool(rng.random() < 0.5))


def _load(canvas: Canvas, rng: np.random.Generator, hold: Hold, plan: ScenePlan) -> list[tuple[str, Box]]:
    """Split the hold into lots, draw each category, then hide goods behind one of them."""
    px = canvas.px
    boxes: list[tuple[str, Box]] = []
    if not plan.loaded:
        return boxes
    length = hold.x1 - hold.x0
    used = length * (1.0 if rng.random() < 0.6 else rng.uniform(0.5, 0.95))
    min_len = {c: px(4300) if c == "vehicles" else px(1500) for c in plan.loaded}
    share = rng.dirichlet(np.ones(len(plan.loaded)) * 3)
    spans = np.maximum(share * used, [min_len[c] for c in plan.loaded])
    spans = spans * min(1.0, length / spans.sum())
    x = hold.x0
    cover_depth = hold.depth_cm * (rng.uniform(0.45, 0.75) if plan.hidden else rng.uniform(0.55, 1.0))
    lots = []
    for cat, span in zip(plan.loaded, spans):
        gap = px(rng.uniform(50, 300))
        lot = Lot(x0=int(x), x1=int(min(x + span - gap, hold.x1)), y_floor=hold.y_floor, y_top=hold.y_roof,
                  depth_cm=cover_depth, fill=float(rng.uniform(0.55, 1.0)))
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
        lot = Lot(x0=x0, x1=x0 + w, y_floor=hold.y_floor, y_top=hold.y_floor - h,
                  depth_cm=hold.depth_cm - cover_depth, fill=1.0)
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
    total = sum((values[c] if c.isalpha() else int(c)) * 2 ** i for i, c in enumerate(code[:10]))
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
        lines.append(ManifestLine(hs_code=code, description=desc, quantity=qty,
                                  unit="units" if cat == "vehicles" else "packages",
                                  weight_kg=float(round(rng.uniform(800, 12000), 0))))
    return Manifest(container_id=container_id(rng), lines=lines)


def simulate_scan(seed: int, *, scan_id: str | None = None, size: str = "mixed", mismatch_rate: float = 0.3,
                  scenario: str | None = None, categories: list[str] | None = None,
                  scanner: ScannerModel | None = None) -> SimulatedScan:
    """Simulate one scan from its seed: plan, load, render, declare.

    Args:
        seed: The scan's seed; the same seed gives the same bytes.
        scan_id: Id to give the scan (default: derived from the seed).
        size: "20ft", "40ft" or "mixed".
        mismatch_rate: Probability that the scan's manifest disagrees with its contents.
        scenario: Force a scenario kind (see SCENARIO_KINDS).
        categories: Force the goods of a clean scan.
        scanner: The scanner model (default: 6/4 MV at 5 mm/pixel).
    """
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
    loaded = sorted({c for c, _ in boxes})
    declared = sorted(set(plan.declared))
    truth = {
        "scenario": plan.scenario,
        "mismatch": plan.scenario not in MATCHING,
        "declared": declared,
        "loaded": loaded,
        "undeclared": sorted(set(loaded) - set(declared)),
        "missing": sorted(set(declared) - set(loaded)),
        "container": {"size": plan.spec.size, "reefer": plan.spec.reefer, "truck": plan.spec.truck,
                      "doors": "left" if plan.flip else "right"},
    }
    return SimulatedScan(scan_id=scan_id or f"sim{seed:020d}", seed=seed, images=images, energies=scanner.labels,
                         pixel_mm=scanner.pixel_mm, boxes=boxes, manifest=manifest, plan=plan, truth=truth)
