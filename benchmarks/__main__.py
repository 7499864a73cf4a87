"""Run the xray benchmarks and write the results, their table and a latency histogram.

    python -m benchmarks [--quick] [--model DIR] [--out benchmarks/results] [--only SECTION ...]

Sections: engine (latency per stage, concurrent streams; CPU, and CUDA and TensorRT where present), http (the real
service under load from a separate process), models (ONNX vs eager PyTorch vs the YOLO11n
peer at equal input), accuracy (mAP, verdict detection rate at the calibrated false-alarm
rate), throughput (simulator scans/s, training images/s, archive re-scoring in one process and on a
local Ray cluster), holdout (a scanner profile never seen in
training: mismatch detection at 5 % false alarms and the out-of-domain flag rate), int8 (the model
statically quantised, timed against FP32, with its verdict figures). A section that cannot run records
why; the exit status is 1 only when a section crashed — never because of a number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.machine import machine_info
from xray.bundled import default_model_dir
from xray.provenance import git_commit

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("engine", "http", "models", "accuracy", "throughput", "holdout", "int8")


def model_summary(model_dir: Path) -> dict[str, Any]:
    card = json.loads((model_dir / "model.json").read_text())
    arch = card.get("architecture", {})
    return {"dir": str(model_dir), "name": card.get("name"), "sha256": str(card.get("sha256", ""))[:12],
            "family": f"{arch.get('name')} / {arch.get('backbone')}", "params": arch.get("params"),
            "input": card.get("input", {}).get("size"), "calibrated": "calibration" in card}


def run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; a crash is recorded (status "error", with the traceback), never raised."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **fn()}
    except Exception as e:  # noqa: BLE001 -- a crashed section is recorded, and must not stop the others
        result = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"[bench] {name}: {result['status']} in {result['seconds']} s", file=sys.stderr, flush=True)
    return result


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small counts, every section (CI)")
    p.add_argument("--model", type=Path, default=default_model_dir(), help="exported model folder (default: the bundled one)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the results")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache",
                   help="canonical scans, peer ONNX files, simulated test data")
    p.add_argument("--holdout-profile", default=None,
                   help="scanner profile held out of training, for the holdout section (default: mobile-gantry)")
    p.add_argument("--record-holdout", action="store_true",
                   help="write the holdout section's figures into the model card (not with --quick)")
    p.add_argument("--int8", type=Path, default=None,
                   help="INT8 model folder for the int8 section (default: quantise the model, cached)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these sections")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.record_holdout and (args.quick or "holdout" not in args.only):
        print("error: --record-holdout needs a full (not --quick) run of the holdout section", file=sys.stderr)
        return 2
    if not (args.model / "model.onnx").is_file() or not (args.model / "model.json").is_file():
        print(f"error: {args.model} is not an exported model folder (needs model.onnx and model.json)", file=sys.stderr)
        return 2
    import onnxruntime as ort

    from benchmarks import accuracy, engine_latency, holdout, http_latency, int8, peer, throughput
    from benchmarks.inputs import canonical_scans

    t0 = time.perf_counter()
    model_dir, cache = args.model.resolve(), args.cache.resolve()
    scans = canonical_scans(cache)
    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "benchmark": "xray", "date": now.strftime("%Y-%m-%d"), "time": now.isoformat(timespec="seconds"),
        "quick": args.quick, "git_commit": git_commit(short=True, cwd=ROOT),
        "machine": {**machine_info(), "onnxruntime_providers": ort.get_available_providers()},
        "model": model_summary(model_dir), "inputs": {k: s.describe() for k, s in scans.items()},
        "reference_ms": report.REFERENCE_MS, "sections": {},
    }
    plan = {
        "engine": lambda: engine_latency.run(model_dir, scans, quick=args.quick, cache=cache),
        "http": lambda: http_latency.run(model_dir, scans, quick=args.quick),
        "models": lambda: peer.run(model_dir, scans, cache, quick=args.quick),
        "accuracy": lambda: accuracy.run(model_dir, cache, quick=args.quick),
        "throughput": lambda: throughput.run(scans, accuracy.held_out_data(cache, quick=args.quick, model_dir=model_dir)[0], quick=args.quick,
                                             model_dir=model_dir, cache=cache),
        "holdout": lambda: holdout.run(model_dir, cache, quick=args.quick,
                                       profile=args.holdout_profile or holdout.DEFAULT_HOLDOUT),
        "int8": lambda: int8.run(model_dir, scans, cache, quick=args.quick, int8_dir=args.int8),
    }
    for name in SECTIONS:
        if name in args.only:
            results["sections"][name] = run_section(name, plan[name])
    held_out = results["sections"].get("holdout") or {}
    if args.record_holdout and held_out.get("status") == "ok":
        holdout.record_in_card(model_dir, held_out, date=results["date"], commit=results["git_commit"])
        print(f"recorded the held-out figures in {model_dir / 'model.json'}", file=sys.stderr)
    results["comparisons"] = report.comparisons(results)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    paths = report.write(results, args.out)
    print(report.markdown(results))
    print("\n".join(f"wrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}" for p in paths.values()))
    crashed = [k for k, v in results["sections"].items() if v["status"] == "error"]
    for k in crashed:
        print(f"\nsection {k} crashed:\n{results['sections'][k]['traceback']}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
