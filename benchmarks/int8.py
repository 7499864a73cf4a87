"""INT8 beside FP32: the model statically quantised (`xray quantize`), timed against itself.

- model only: the 40-ft canonical scan's model input, FP32 and INT8 sessions run in turn
  (interleaved, so that other load on the machine falls on both alike), with the engine's
  threads and with one thread (whose CPU time is the steadiest figure on a shared machine);
- engine total: decode, preprocess, both passes, verify, the two engines inspecting in turn;
- verdicts: the INT8 card's own figures beside FP32's (`xray quantize --evaluate`) when it has
  them; a full run without them evaluates the INT8 model on the test split here.

The INT8 model is `--int8 DIR` when given, else the one cached for this FP32 model in
`cache/int8/`, quantised on first use from validation scans of the model's training data, or of
data/sim for a card that names none (quick: 8, a few seconds; full: 150). Without a validation
split there is nothing to calibrate on and the section says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.accuracy import DEFAULT_DATA, ROOT, held_out_data, training_data
from benchmarks.engine_latency import inspect_once
from benchmarks.inputs import CanonicalScan
from benchmarks.report import _get
from benchmarks.stats import summarize
from xray.data.format import has_split
from xray.engine import Engine
from xray.quantize import CALIBRATION_SCANS, compare_latency, engine_inputs, quantize_model
from xray.sources.files import read_scan
from xray.verify import Inspector

QUICK_SCANS = 8


def int8_model(model_dir: Path, cache: Path, *, quick: bool, given: Path | None = None) -> tuple[Path | None, str]:
    """The INT8 model folder to time (None when none can be made) and where it came from."""
    if given is not None:
        return given, f"given: {given}"
    card = json.loads((model_dir / "model.json").read_text())
    if card.get("precision", "fp32") != "fp32":
        return None, f"{model_dir} is itself {card['precision']}: nothing to quantise"
    scans = QUICK_SCANS if quick else CALIBRATION_SCANS
    folder = cache / "int8" / f"{str(card.get('sha256', ''))[:12]}-{scans}"
    trained = training_data(model_dir)[0] or DEFAULT_DATA  # the scanners it was trained on
    name = trained.relative_to(ROOT) if trained.is_relative_to(ROOT) else trained
    if (folder / "model.json").is_file():
        return folder, f"cached: quantised earlier from {scans} validation scans of {name}"
    if not has_split(trained, "val"):
        return None, f"no INT8 model: {name} has no validation split to calibrate on (pass --int8 DIR)"
    quantize_model(model_dir, folder, data=trained, split="val", scans=scans, latency_runs=0)
    return folder, f"quantised now from {scans} validation scans of {name}"


def engine_totals(fp32: Engine, int8: Engine, scan: CanonicalScan, n: int, warmup: int = 2) -> dict[str, Any]:
    """Engine total (decode to verdict) of the 40-ft scan, the two engines inspecting in turn."""
    inspectors = {"fp32": Inspector(fp32), "int8": Inspector(int8)}
    totals: dict[str, list[float]] = {k: [] for k in inspectors}
    model: dict[str, list[float]] = {k: [] for k in inspectors}
    for i in range(warmup + n):
        for k, inspector in inspectors.items():
            t = inspect_once(inspector, scan, scan.manifest)
            if i >= warmup:
                totals[k].append(t["total"])
                model[k].append(t["model"])
    return {k: {"total_ms": summarize(totals[k]), "model_stage_ms": summarize(model[k])} for k in inspectors}


def run(
    model_dir: Path, scans: dict[str, CanonicalScan], cache: Path, *, quick: bool, int8_dir: Path | None = None
) -> dict[str, Any]:
    """The section."""
    t0 = time.perf_counter()
    folder, source = int8_model(model_dir, cache, quick=quick, given=int8_dir)
    if folder is None:
        return {"skipped": source}
    built_s = round(time.perf_counter() - t0, 1)
    n = 10 if quick else 60
    fp32, int8 = Engine(model_dir), Engine(folder)
    x = engine_inputs(fp32, read_scan(scans["40ft"].high, scans["40ft"].low))[0][None]
    card = int8.card
    q = card.get("quantization") or {}
    out: dict[str, Any] = {
        "int8_model": str(folder), "source": source, "seconds_to_build": built_s,
        "calibration": {**{k: (q.get("calibration") or {}).get(k) for k in ("scans", "inputs", "method")},
                        "split": _get(q, "calibration", "data", "split")},
        "nodes_quantised": q.get("nodes_quantised"), "fidelity": q.get("fidelity"),
        "model_only": {
            "engine_threads": compare_latency(model_dir / "model.onnx", folder / "model.onnx", x, runs=n,
                                              threads=fp32.session.get_session_options().intra_op_num_threads),
            "one_thread": compare_latency(model_dir / "model.onnx", folder / "model.onnx", x, runs=n, threads=1),
        },
        "engine_40ft": engine_totals(fp32, int8, scans["40ft"], 5 if quick else 30),
    }
    accuracy = q.get("accuracy")
    if accuracy is None and not quick:
        from xray.quantize import verdict_figures

        data, about = held_out_data(cache, quick=False, model_dir=model_dir)
        accuracy = {"data": about, "split": "test", "int8": verdict_figures(folder, data, "test", None)}
    out["accuracy"] = accuracy
    return out
