"""Session 13: `xray.hold.measure_hold` on the bundled engine's whole-scan inputs: empty and loaded
containers of the four training profiles' test split and of the held-out gantry, empty ones with a
load drawn in (a layer on the floor, a full-height crate), and images that are not cargo scans.

    .venv/bin/python benchmarks/results/2026-11-29-hold-synthetic.py
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from xray.engine import Engine  # noqa: E402
from xray.foreign import foreign_images  # noqa: E402
from xray.hold import floor_band, measure_hold  # noqa: E402
from xray.scan import Scan  # noqa: E402
from xray.sources.files import read_scan  # noqa: E402

SETS = [ROOT / "data" / "sim-realistic4", ROOT / "runs" / "default-realistic" / "bench-cache" / "holdout-mobile-gantry-300"]


def attenuation(engine: Engine, scan: Scan) -> np.ndarray:
    whole = engine.model_inputs(scan)[0]
    h, w = whole.lb.resized_hw
    return whole.x[0, :h, :w] * np.float32(engine.spec.std[0]) + np.float32(engine.spec.mean[0])


def drawn_in(a: np.ndarray) -> dict[str, np.ndarray]:
    """An empty container's attenuation with loads drawn in, by name."""
    h, w = a.shape
    band = floor_band(a[::2, ::2]).rows
    assert band is not None
    floor, roof = band[0] * 2, int(0.08 * h)
    inside, c0, c1 = floor - roof, int(0.05 * w), int(0.95 * w)
    out = {}
    for frac in (0.04, 0.06, 0.08, 0.12, 0.15, 0.25):
        for value in ("+1", "A=8"):
            for length in (1.0, 0.5):
                b = a.copy()
                rows = slice(floor - max(1, int(frac * inside)), floor)
                cols = slice(c0, c0 + int(length * (c1 - c0)))
                b[rows, cols] = b[rows, cols] + 1.0 if value == "+1" else 8.0
                out[f"layer {frac:.2f} of the inside height, {value}, {length:.0%} of the length"] = b
    for lift in (0.02, 0.04):  # steel plates on dunnage: a gap of bearers between them and the floor
        b = a.copy()
        gap = max(2, int(lift * h))
        b[floor - gap - int(0.06 * inside) : floor - gap, c0:c1] = 8.0
        out[f"plates 6 % of the inside height on dunnage {lift:.0%} of the height, A=8"] = b
    for extra in (0.2, 0.35, 0.5):  # light goods filling the hold (foam, mattresses)
        b = a.copy()
        b[roof + int(0.1 * inside) : floor, c0:c1] += extra
        out[f"light goods filling the hold, +{extra}"] = b
    for width in (0.03, 0.05, 0.10):
        b = a.copy()
        x0 = int(0.4 * w)
        b[roof:floor, x0 : x0 + max(1, int(width * w))] += 1.0
        out[f"full-height crate {width:.0%} of the length, +1"] = b
    return out


def main() -> None:
    engine = Engine(ROOT / "models" / "default", threads=1)
    empty: dict[tuple[str, str], list[bool]] = collections.defaultdict(list)
    loads: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    walls: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for root in SETS:
        truth = {t["scan_id"]: t for t in map(json.loads, (root / "truth.jsonl").read_text().splitlines())}
        for image in json.loads((root / "annotations" / "test.json").read_text())["images"]:
            t = truth[image["scan_id"]]
            if t["profile"] == "pseudo-colour":
                continue
            low = root / "images" / image["low_file_name"] if image.get("low_file_name") else None
            a = attenuation(engine, read_scan(root / "images" / image["file_name"], low))
            hold = measure_hold(a)
            assert hold is not None
            key = ("loaded" if t["loaded"] else "empty", t["profile"])
            empty[key].append(hold.empty)
            loads[key].append(hold.load)
            walls[key].append(hold.walls)
            if not t["loaded"]:
                for name, b in drawn_in(a).items():
                    drawn = measure_hold(b)
                    empty[(name, "")].append(bool(drawn and drawn.empty))
    for kind, scans in foreign_images().items():
        for scan in scans:
            if scan.is_physical:
                hold = measure_hold(attenuation(engine, scan))
                empty[("not cargo", kind)].append(bool(hold and hold.empty))
    for key, values in sorted(empty.items()):
        extra = (
            f"  load {min(loads[key]):.3f}-{max(loads[key]):.3f}, walls {min(walls[key]):.3f}-{max(walls[key]):.3f}"
            if key in loads
            else ""
        )
        print(f"{key[0]:58s} {key[1]:20s} measured empty {sum(values):4d} of {len(values):4d}{extra}")


if __name__ == "__main__":
    main()
