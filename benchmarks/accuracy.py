"""Accuracy: box mAP@0.5 and mAP@0.5:0.95 of the detector, and the scan-level verdict — the
mismatch detection rate at the calibrated false-alarm rate — on the held-out simulator test split.

mAP comes from the model card's test metrics (written by `xray export --data`); when the card
has none and the training checkpoint and the data are here, a full run evaluates the test
split itself. The verdicts run the engine and verifier on the test split (`evaluate_verdicts`).
The data is the test split of the model's training data when present, else a small test set
simulated into the cache with the scanner profiles the card names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmarks.eager import find_checkpoint
from xray.calibration import evaluate_verdicts
from xray.data.format import has_split

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "data" / "sim"
BENCH_SEED = 777  # seeds of the cached test set; disjoint streams from data/sim's (seed 2026)


def training_data(model_dir: Path) -> tuple[Path | None, list[str] | None]:
    """The dataset the model's card says it was trained on (when it is here) and its scanner profiles."""
    card = json.loads((model_dir / "model.json").read_text())
    data = (card.get("training") or {}).get("data") or {}
    path = Path(data["path"]) if data.get("path") else None
    if path is not None and not path.is_absolute():
        path = ROOT / path
    return (path if path is not None and (path / "dataset.json").is_file() else None), data.get("profiles")


def held_out_data(cache: Path, *, quick: bool, model_dir: Path) -> tuple[Path, str]:
    """A dataset with a labelled test split, from the scanners the model was trained on: its own training
    data's test split when here; else data/sim for a model of the first simulator's look; else test scans
    simulated into the cache with the card's profiles."""
    count = 16 if quick else 200
    trained, profiles = training_data(model_dir)
    if trained is not None and has_split(trained, "test", truth=True):
        return trained, f"{trained.relative_to(ROOT) if trained.is_relative_to(ROOT) else trained} (the model's own held-out test split)"
    if not profiles and has_split(DEFAULT_DATA, "test", truth=True):
        return DEFAULT_DATA, "data/sim (the first simulator's held-out test split)"
    root = cache / ("-".join(["sim-test", str(count), *(profiles or [])]))
    if not (root / "dataset.json").is_file():  # written last: a complete earlier run
        from xray.simulate.dataset import generate_dataset

        if root.exists():  # a run that stopped half-way
            import shutil

            shutil.rmtree(root)
        generate_dataset(root, count=count, seed=BENCH_SEED, size="mixed", workers=os.cpu_count() or 1,
                         mismatch_rate=0.4, splits=(0.0, 0.0, 1.0), progress=False, profiles=profiles or None)
    with_profiles = f", profiles {', '.join(profiles)}" if profiles else ""
    return root, f"{count} scans simulated for the benchmark (seed {BENCH_SEED}{with_profiles}; training data not here)"


def box_metrics(model_dir: Path, data: Path, *, evaluate_if_missing: bool) -> dict[str, Any]:
    """mAP@0.5 and mAP@0.5:0.95 with where they come from."""
    card = json.loads((model_dir / "model.json").read_text())
    metrics = card.get("metrics") or {}
    if "test" in metrics:
        m = metrics["test"]
        return {"source": "model card, test split", "mAP50": m.get("mAP50"), "mAP": m.get("mAP"),
                "scans": (m.get("data") or {}).get("scans")}
    checkpoint = find_checkpoint(card, model_dir)
    if evaluate_if_missing and checkpoint is not None:
        from xray.data.dataset import XrayDataset
        from xray.model import model_from_checkpoint
        from xray.model.preprocess import InputSpec
        from xray.train.evaluate import evaluate

        model, ckpt = model_from_checkpoint(checkpoint)
        spec = InputSpec.from_dict(ckpt["config"]["input"])
        ds = XrayDataset(data, "test", spec=spec, classes=ckpt["classes"], image_labels="none")
        m, _ = evaluate(model, ds)
        return {"source": f"evaluated now from {checkpoint} on the test split", "mAP50": m["mAP50"], "mAP": m["mAP"],
                "scans": len(ds)}
    val = metrics.get("val") or {}
    return {"source": "model card, validation split (the card has no test metrics)", "mAP50": val.get("mAP50"),
            "mAP": val.get("mAP"), "scans": None}


def run(model_dir: Path, cache: Path, *, quick: bool) -> dict[str, Any]:
    """The section."""
    data, about = held_out_data(cache, quick=quick, model_dir=model_dir)
    limit = 16 if quick else None
    verdicts = evaluate_verdicts(model_dir, data, split="test", limit=limit, progress=False)
    keep = ("scans", "mismatches", "red_threshold", "detection_rate", "false_alarm_rate", "roc_auc",
            "calibrated_false_alarm", "concealed_cigarettes", "flagged_by_scenario", "engine_ms")
    return {"data": about, "boxes": box_metrics(model_dir, data, evaluate_if_missing=not quick),
            "verdicts": {k: verdicts.get(k) for k in keep},
            "note": None if verdicts.get("calibrated_false_alarm") is not None else
            "the model card has no calibrated thresholds (xray calibrate); the verifier's defaults were used"}
