"""The `xray` command."""

from __future__ import annotations

import argparse
import json
import os
import sys

from xray.errors import XrayError


def _simulate(args: argparse.Namespace) -> int:
    from xray.simulate.dataset import generate_dataset

    fractions = tuple(float(v) for v in args.splits.split(","))
    summary = generate_dataset(args.out, count=args.count, seed=args.seed, size=args.size, workers=args.workers,
                               mismatch_rate=args.mismatch_rate, splits=fractions, compress=args.compress,
                               progress=not args.quiet, profiles=args.profile)
    print(json.dumps(summary, indent=2))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import cv2

    from xray.engine import Engine
    from xray.manifest import Manifest
    from xray.overlay import draw_overlay
    from xray.sources.files import read_scan
    from xray.verify import Inspector

    pixel_mm = (args.pixel_mm, args.pixel_mm) if args.pixel_mm else None
    scan = read_scan(args.scan, args.low, pixel_mm=pixel_mm)
    manifest = Manifest.load(args.manifest)
    engine = Engine(args.model, threads=args.threads, tile=args.tile)
    engine.warm_up()
    verdict = Inspector(engine).inspect(scan, manifest)
    print(verdict.model_dump_json(indent=2))
    if args.overlay:
        cv2.imwrite(args.overlay, draw_overlay(scan, verdict))
        print(f"overlay written to {args.overlay}", file=sys.stderr)
    t = verdict.timings_ms
    print("timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()), file=sys.stderr)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from xray.calibration import calibrate_model

    result = calibrate_model(args.model, args.data, split=args.split, false_alarm=args.false_alarm,
                             review_rate=args.review_rate, limit=args.limit, progress=not args.quiet, flip=args.flip)
    print(json.dumps(result, indent=2))
    return 0


def _evaluate_verdicts(args: argparse.Namespace) -> int:
    from xray.calibration import evaluate_verdicts

    report = evaluate_verdicts(args.model, args.data, split=args.split, out=args.out, limit=args.limit,
                               progress=not args.quiet)
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray", description="AI analysis of cargo X-ray scans.")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{simulate,inspect,calibrate,evaluate,export}")
    sub.add_parser("evaluate", help="COCO mAP of a checkpoint (xray evaluate --help), or --verdicts")
    sub.add_parser("export", help="export a checkpoint to ONNX with its model card (xray export --help)")
    s = sub.add_parser("simulate", help="simulate a labeled dataset of cargo scans (the virtual scanner)")
    s.add_argument("--out", required=True, help="dataset folder to create (must be new or empty)")
    s.add_argument("--count", type=int, required=True, help="number of scans")
    s.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same bytes)")
    s.add_argument("--size", choices=["20ft", "40ft", "mixed"], default="mixed", help="container size")
    s.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    s.add_argument("--mismatch-rate", type=float, default=0.3, help="fraction of scans whose manifest is wrong")
    s.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test fractions")
    s.add_argument("--compress", action="store_true", help="deflate the PNGs (~2/3 the size, ~10x slower to write)")
    s.add_argument("--profile", default=None, metavar="NAME[,NAME...]",
                   help="scanner profiles (xray/simulate/profiles); several mix, one per scan (default: none)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_simulate)

    s = sub.add_parser("inspect", help="inspect one scan against its manifest: verdict JSON and overlay")
    s.add_argument("scan", help="scan file (PNG, TIFF, JPEG, DICOS); the high energy for dual-energy pairs")
    s.add_argument("--low", default=None, help="low-energy file of a dual-energy pair")
    s.add_argument("--manifest", required=True, help="manifest JSON")
    s.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    s.add_argument("--overlay", default=None, help="write the evidence picture here (PNG)")
    s.add_argument("--pixel-mm", type=float, default=None, help="pixel spacing when the file does not carry it")
    s.add_argument("--tile", action="store_true", help="add tiles for scans much larger than the model input")
    s.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    s.set_defaults(func=_inspect)

    s = sub.add_parser("calibrate", help="set the verifier's thresholds to a false-alarm rate on a labelled split")
    s.add_argument("--model", required=True, help="model folder; its model.json gets the thresholds")
    s.add_argument("--data", required=True, help="dataset folder with truth.jsonl")
    s.add_argument("--split", default="val")
    s.add_argument("--false-alarm", type=float, default=0.01, help="largest share of matching scans sent to red")
    s.add_argument("--review-rate", type=float, default=None, help="largest share sent to yellow or red")
    s.add_argument("--limit", type=int, default=None, help="use at most this many scans")
    s.add_argument("--flip", action="store_true",
                   help="test-time augmentation: average each scan with its mirror image (one more model pass)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_calibrate)
    return p


def _evaluate_verdicts_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray evaluate --verdicts",
                                description="Scan-level mismatch detection of an exported model on a labelled split.")
    p.add_argument("--verdicts", action="store_true", required=True)
    p.add_argument("--model", required=True, help="model folder (model.onnx + model.json)")
    p.add_argument("--data", required=True, help="dataset folder with truth.jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="folder for verdicts.json and roc.png")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate_verdicts, command="evaluate")
    return p


# Commands whose parsers live with their code (xray/train, xray/export): forwarded as is.
FORWARDED = {"evaluate": ("xray.train.evaluate", "evaluate_main"), "export": ("xray.export", "export_main")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate" and "--verdicts" in argv:
        args = _evaluate_verdicts_parser().parse_args(argv[1:])
    elif argv and argv[0] in FORWARDED:
        import importlib

        module, fn = FORWARDED[argv[0]]
        return getattr(importlib.import_module(module), fn)(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except XrayError as e:
        print(f"xray {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
