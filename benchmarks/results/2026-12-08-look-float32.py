"""The look on the scan, before and after session 24's float32 change (issue 13's training time).

    PYTHONPATH=. python benchmarks/results/2026-12-08-look-float32.py transforms [COMMIT_BEFORE]
    PYTHONPATH=. python benchmarks/results/2026-12-08-look-float32.py items [N]

`transforms`: CPU of QuantumNoise and DisplayExport on a synthetic 800 x 2,462 x 3 image, this checkout's
against `xray/data/augment.py` at COMMIT_BEFORE (default 39feb9a), alternated, median of 5.
`items`: CPU per stage-6 training item (models/default-realistic4-s6l.yaml, data/sim-realistic4, TIP
patches kept, one torch thread) of the checkout it runs in; run it in a worktree of the commit before
too, and alternate. Prints a digest of the items: equal within float32 rounding across the change.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def transforms(commit: str) -> None:
    from xray.data import augment as new

    source = subprocess.run(["git", "show", f"{commit}:xray/data/augment.py"], check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "augment_before.py"
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("augment_before", path)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    img = np.clip(np.random.default_rng(0).gamma(2, 0.05, (800, 2462, 3)).astype(np.float32), 0, 1)
    export = dict(g=1.2, black=1.0, white=2.0)
    cases = {
        "QuantumNoise": lambda m: m.QuantumNoise((1e4, 1e6)).apply(img, n0=1e5, seed=3),
        "DisplayExport, log curve, no JPEG": lambda m: m.DisplayExport((0.7, 1.4), (40, 90)).apply(
            img, log=True, quality=None, **export),
        "DisplayExport, linear curve, no JPEG": lambda m: m.DisplayExport((0.7, 1.4), (40, 90)).apply(
            img, log=False, quality=None, **export),
        "DisplayExport, log curve, JPEG": lambda m: m.DisplayExport((0.7, 1.4), (40, 90)).apply(
            img, log=True, quality=70, **export),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(5):
        for name, fn in cases.items():
            for tag, module in (("before", old), ("after", new)):
                t = cpu_s()
                fn(module)
                times.setdefault((name, tag), []).append(cpu_s() - t)
    print("| transform | before ms | after ms |\n|---|---|---|")
    for name in cases:
        b, a = (np.median(times[(name, tag)]) * 1e3 for tag in ("before", "after"))
        print(f"| {name} | {b:.1f} | {a:.1f} |")


def items(n: int) -> None:
    import torch

    from xray.config import load_config
    from xray.train.loop import build_datasets

    torch.set_num_threads(1)
    data = Path("data/sim-realistic4")
    cats = json.loads((data / "annotations" / "train.json").read_text())["categories"]
    ds, _ = build_datasets(data, load_config("models/default-realistic4-s6l.yaml"),
                           [c["name"] for c in sorted(cats, key=lambda c: c["id"])])
    ds.keep_tip_patches()
    ds[0]
    t, digest = cpu_s(), 0.0
    for i in range(n):
        x, _, _ = ds[i * 7 % len(ds)]
        digest += float(x.double().sum())
    print(f"{n} items: {(cpu_s() - t) / n * 1e3:.1f} ms of CPU per item; digest {digest:.6e}")


if __name__ == "__main__":
    if sys.argv[1] == "transforms":
        transforms(sys.argv[2] if len(sys.argv) > 2 else "39feb9a")
    else:
        items(int(sys.argv[2]) if len(sys.argv) > 2 else 200)
