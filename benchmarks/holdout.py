"""Held-out profile: our stand-in for sim-to-real. A model is evaluated on scans simulated with a
scanner profile it never saw in training (`--holdout-profile`, default mobile-gantry).

Reported: mismatch detection at 5 % false alarms (the operating point set on the held-out
scans themselves: how well the risk separates, whatever the calibrated thresholds), ROC AUC,
and the share of scans the out-of-domain guard flags. The risk is taken without the guard,
which would send every flagged scan to review; its flag rate is reported beside it.
`--record-holdout` writes the figures into the model card's `holdout` section (`make model` does).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from xray.calibration import score_split
from xray.engine import Engine
from xray.verify import VerifierConfig, verify

HOLDOUT_SEED = 4242  # disjoint from data/sim (2026), the calibration sets (2027) and the cached test set (777)
DEFAULT_HOLDOUT = "mobile-gantry"
FALSE_ALARM = 0.05


def holdout_data(cache: Path, profile: str, *, quick: bool) -> Path:
    """Scans simulated with `profile` into the cache (once; written last: a complete earlier run)."""
    count = 24 if quick else 300
    root = cache / f"holdout-{profile}-{count}"
    if not (root / "dataset.json").is_file():
        from xray.simulate.dataset import generate_dataset

        if root.exists():  # a run that stopped half-way
            shutil.rmtree(root)
        generate_dataset(
            root,
            count=count,
            seed=HOLDOUT_SEED,
            size="mixed",
            workers=os.cpu_count() or 1,
            mismatch_rate=0.4,
            splits=(0.0, 0.0, 1.0),
            progress=False,
            profiles=[profile],
        )
    return root


def detection_at(risks: np.ndarray, mismatch: np.ndarray, false_alarm: float) -> dict[str, float | None]:
    """Mismatch detection at the lowest threshold that keeps the clean scans' false alarms <= `false_alarm`."""
    clean, bad = risks[~mismatch], risks[mismatch]
    if not len(clean) or not len(bad):
        return {"threshold": None, "detection_rate": None, "false_alarm_rate": None}
    ranked = np.sort(clean)[::-1]
    allowed = int(false_alarm * len(ranked))
    t = float(ranked[allowed]) + 1e-9 if allowed < len(ranked) else 0.0
    return {"threshold": t, "detection_rate": float(np.mean(bad >= t)), "false_alarm_rate": float(np.mean(clean >= t))}


def by_scenario(risks: np.ndarray, scenarios: list[str], threshold: float | None) -> dict[str, dict[str, float | int]]:
    """Each scenario's scans and the share at or above `threshold`: detection for the mismatch
    scenarios, false alarms for the clean ones. One hard kind of mismatch (concealment, on every
    model so far) can hold the overall figure down while the others pass; this shows which."""
    if threshold is None:
        return {}
    names = np.asarray(scenarios)
    masks = {name: names == name for name in sorted(set(scenarios))}
    return {name: {"scans": int(m.sum()), "flagged": float(np.mean(risks[m] >= threshold))} for name, m in masks.items()}


def run(model_dir: Path, cache: Path, *, quick: bool, profile: str = DEFAULT_HOLDOUT) -> dict[str, Any]:
    """The section."""
    from sklearn.metrics import roc_auc_score

    data = holdout_data(cache, profile, quick=quick)
    engine = Engine(model_dir)
    config = VerifierConfig.from_card(engine.card)
    records = score_split(engine, data, "test", progress=False)
    risks = np.array(
        [verify(r["found"].model_copy(update={"domain": None}), r["manifest"], config=config).risk for r in records]
    )
    mismatch = np.array([r["mismatch"] for r in records])
    at = detection_at(risks, mismatch, FALSE_ALARM)
    flagged = [r["found"].domain is not None and not r["found"].domain.in_domain for r in records]
    trained_on = ((engine.card.get("training") or {}).get("data") or {}).get("profiles")
    return {
        "holdout_profile": profile,
        "data": str(data),
        "scans": len(records),
        "mismatches": int(mismatch.sum()),
        "trained_on_profiles": trained_on,
        f"at_{int(FALSE_ALARM * 100)}pct_false_alarms": at,
        "by_scenario": by_scenario(risks, [r["scenario"] for r in records], at["threshold"]),
        "roc_auc": float(roc_auc_score(mismatch, risks)) if 0 < mismatch.sum() < len(mismatch) else None,
        "ood_flagged": float(np.mean(flagged)) if records else None,
        "guard": "calibrated" if engine.guard is not None else "none (the model card has no domain section)",
    }


def record_in_card(model_dir: Path, result: dict[str, Any], *, date: str, commit: str | None) -> None:
    """The section's figures as the card's `holdout` section, with when and at which commit they
    were measured; a quick run (a few scans) is never recorded."""
    from xray.card import write_card

    card_path = model_dir / "model.json"
    card = json.loads(card_path.read_text())
    figures = {k: v for k, v in result.items() if k not in ("status", "seconds")}
    card["holdout"] = {**figures, "measured": date, "git_commit": commit, "false_alarm_target": FALSE_ALARM,
                       "method": "python -m benchmarks --only holdout (benchmarks/holdout.py)"}
    write_card(card_path, card)
