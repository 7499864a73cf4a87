"""Session 22: the out-of-domain guard's calibration, offline on one model's measure vectors.

Measures every scan once (input statistics, a 16-band grey-level profile, JPEG blocking, pooled
features; `xray.calibration.guard_measures`), then calibrates guards on random subsets of the
validation scans and counts the flagged shares of the in-domain test split, the broken profile and
the non-cargo images. Compares one half fitting / the other thresholding (the method until session
22) with 5-fold out-of-fold thresholds, and 4, 8 or 16 profile bands (4 and 8 are averages of the 16).

    PYTHONPATH=. python benchmarks/results/2026-12-07-guard-lab.py --model models/default \\
        --calib data/calib-realistic4-6000 --test data/sim-realistic4 --broken data/ood-broken-300 \\
        --cache runs/guardlab/vectors16.pkl
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from xray.calibration import guard_measures, split_scans
from xray.domain import MIN_GROUP_SCANS, DomainGuard, Reference, calibrate_guard
from xray.engine import Engine
from xray.foreign import foreign_images


def measure(args: argparse.Namespace) -> dict:
    if Path(args.cache).exists():
        return pickle.loads(Path(args.cache).read_bytes())
    engine = Engine(args.model)
    res = {
        "cal": guard_measures(engine, split_scans(args.calib, "val"), progress=True, desc="val"),
        "test": guard_measures(engine, split_scans(args.test, "test"), progress=True, desc="test"),
        "broken": guard_measures(engine, split_scans(args.broken, "test"), progress=True, desc="broken"),
        "foreign": ([], []),
    }
    for scans in foreign_images().values():
        v, g = guard_measures(engine, scans)
        res["foreign"][0].extend(v)
        res["foreign"][1].extend(g)
    Path(args.cache).write_bytes(pickle.dumps(res))
    return res


def with_bands(vectors: list[dict], bands: int) -> list[dict]:
    """The profile with `bands` bands, averaged from the measured 16 (its first 16 entries)."""
    return [
        {**v, "profile": np.concatenate([v["profile"][:16].reshape(bands, -1).mean(axis=1), v["profile"][16:]])}
        for v in vectors
    ]


def half_split(vectors: list[dict], groups: list[str], target: float) -> DomainGuard:
    """The method until session 22: one half fits each reference, the other sets its threshold."""
    order = np.random.default_rng(0).permutation(len(vectors))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    g = np.asarray(groups)

    def fitted(name: str, f: np.ndarray, h: np.ndarray) -> Reference:
        ref = Reference.fit(np.stack([vectors[i][name] for i in f]))
        d = [ref.distance(vectors[i][name]) for i in h]
        share = target * (0.2 if name == "features" else 1.0)
        return Reference(ref.mean, ref.precision, float(np.quantile(d, 1 - share, method="higher")))

    names = sorted(vectors[0])
    refs = {n: fitted(n, fit, held) for n in names}
    by: dict = {}
    for grp in set(groups):
        if (g == grp).sum() >= MIN_GROUP_SCANS:
            for n in names:
                if n != "features":
                    by.setdefault(n, {})[grp] = fitted(n, fit[g[fit] == grp], held[g[held] == grp])
    return DomainGuard(refs, groups=by)


def flagged(guard: DomainGuard, vectors: list[dict], groups: list[str], formats: dict[str, int]) -> float:
    def off(v: dict, g: str) -> bool:
        if formats.get(g, 0) < MIN_GROUP_SCANS:
            return True
        return any(not (r := guard.reference(n, g)[0]).distance(v[n]) <= r.threshold for n in guard.references)

    return float(np.mean([off(v, g) for v, g in zip(vectors, groups, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("--model", "--calib", "--test", "--broken", "--cache"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    res = measure(args)
    cal_v, cal_g = res["cal"]
    print("| method | bands | target | validation scans | in-domain test | broken | not cargo |")
    print("|---|---|---|---|---|---|---|")
    for method, bands, target, n in [
        ("half", 4, 0.005, 3000),
        ("half", 4, 0.005, 6000),
        ("5-fold", 4, 0.005, 6000),
        ("5-fold", 8, 0.005, 6000),
        ("5-fold", 16, 0.005, 6000),
        ("5-fold", 16, 0.005, 3000),
        ("5-fold", 16, 0.003, 3000),
        ("5-fold", 16, 0.003, 6000),
    ]:
        rows = []
        for sub in range(3):
            idx = np.random.default_rng(100 + sub).permutation(len(cal_v))[:n]
            v, g = with_bands([cal_v[i] for i in idx], bands), [cal_g[i] for i in idx]
            guard = half_split(v, g, target) if method == "half" else calibrate_guard(v, groups=g, target=target)[0]
            formats = {k: g.count(k) for k in set(g)}
            rows.append(
                [
                    flagged(guard, with_bands(res[s][0], bands), res[s][1], formats)
                    for s in ("test", "broken", "foreign")
                ]
            )
        lo, hi = 100 * np.min(rows, axis=0), 100 * np.max(rows, axis=0)
        cells = " | ".join(f"{a:.1f}-{b:.1f} %" for a, b in zip(lo, hi, strict=True))
        print(f"| {method} | {bands} | {target} | {n} (3 subsets) | {cells} |", flush=True)


if __name__ == "__main__":
    main()
