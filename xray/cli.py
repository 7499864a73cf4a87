"""The `xray` command: one command with modes, as `yolo train|val|predict|export`.

    xray train | evaluate | calibrate | export | quantize | inspect | serve | rescore | keys | simulate | dataset | reference

Every mode's parser is built here with argparse subparsers; each mode imports what it
needs only when it runs (`xray inspect` and `xray --help` never load torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xray.errors import XrayError

if TYPE_CHECKING:
    from xray.config import ExecutionConfig
    from xray.service import Settings

MODES = (
    "train",
    "evaluate",
    "calibrate",
    "export",
    "quantize",
    "inspect",
    "serve",
    "rescore",
    "keys",
    "simulate",
    "dataset",
    "reference",
)


def _flags(values: dict[str, object]) -> list[str]:
    """Command-line flags of the non-None values (True is a bare switch): for modules whose entry point takes argv."""
    out: list[str] = []
    for flag, value in values.items():
        if value is None or value is False:
            continue
        out += [flag] if value is True else [flag, str(value)]
    return out


def _add_execution(p: argparse.ArgumentParser) -> None:
    """Flags of `xray.config.ExecutionConfig` (left out: its defaults)."""
    g = p.add_argument_group("execution provider (onnxruntime)")
    g.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        default=None,
        help="auto (default: CUDA when onnxruntime offers it, else CPU), cpu, cuda or tensorrt",
    )
    g.add_argument("--device-id", type=int, default=None, help="GPU to run on (default 0)")
    g.add_argument("--fp16", action="store_true", default=None, help="TensorRT: allow FP16 kernels")
    g.add_argument("--trt-cache", type=Path, default=None, help="TensorRT: keep built engines in this folder")


def _execution(args: argparse.Namespace) -> ExecutionConfig:
    from xray.config import ExecutionConfig

    given = {"provider": args.provider, "device_id": args.device_id, "fp16": args.fp16, "trt_cache": args.trt_cache}
    return ExecutionConfig().replace(**{k: v for k, v in given.items() if v is not None})


# -- train -----------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a goods detector on a dataset in the xray format",
        description="Train a goods detector on X-ray scans. The run folder gets last.pt, best.pt, "
        "metrics.csv, config.yaml and plots; export with `xray export OUT/best.pt`.",
    )
    p.add_argument("--data", required=True, help="dataset folder (datasets/FORMAT.md)")
    p.add_argument("--model", default="models/xray_s.yaml", help="model config YAML")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning stage)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: on the CPU, the cores the loader's workers leave, at least 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    p.add_argument(
        "--ddp",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel on N local processes (one per GPU), as `torchrun --standalone --nproc_per_node N "
        "-m xray train ...`; --batch-size is per process",
    )
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    if args.ddp is not None:
        return _train_ddp(args)
    from xray.train.loop import fit

    summary = fit(
        data=args.data,
        config=args.model,
        out=args.out,
        epochs=args.epochs,
        device=args.device,
        resume=args.resume,
        init=args.init,
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
        progress=not args.no_progress,
        threads=args.threads,
    )
    best = summary["best"] or {}
    if summary.get("rank", 0) != 0:
        return 0  # rank 0 reports
    if best.get("level") == "scan":
        print(
            f"done: {summary['out']}  best val scan mAP {best.get('scan_mAP')}  "
            f"balanced accuracy {best.get('balanced_accuracy')}"
        )
    else:
        print(f"done: {summary['out']}  best val mAP50 {best.get('mAP50')}  mAP {best.get('mAP')}")
    return 0


def _train_ddp(args: argparse.Namespace) -> int:
    """`xray train` in N processes started by torch's own launcher (what torchrun runs)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from xray.train.distributed import launched

    if args.ddp < 1:
        raise _UsageError("--ddp needs at least 1 process")
    if launched():
        raise _UsageError("--ddp starts the processes itself: under torchrun, leave it out")
    same = {
        "--data": args.data,
        "--model": args.model,
        "--epochs": args.epochs,
        "--out": args.out,
        "--device": args.device,
        "--resume": args.resume,
        "--init": args.init,
        "--batch-size": args.batch_size,
        "--workers": args.workers,
        "--seed": args.seed,
        "--threads": args.threads,
        "--no-progress": args.no_progress,
    }
    launch = ["--standalone", "--nproc-per-node", str(args.ddp), "-m", "xray", "train", *_flags(same)]
    try:
        run(get_args_parser().parse_args(launch))
    except ChildFailedError as e:
        print(f"xray train: a process failed: {e}", file=sys.stderr)
        return 1
    return 0


# -- evaluate --------------------------------------------------------------------------------


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="box mAP of a checkpoint (--level box) or verdicts of a model (--level scan)",
        description="--level box: COCO mAP of a training checkpoint on a split. --level scan: "
        "mismatch detection of an exported model folder on a labelled split (truth.jsonl).",
    )
    p.add_argument("--level", choices=("box", "scan"), default=None, help="box (default) or scan")
    p.add_argument(
        "--verdicts", dest="level", action="store_const", const="scan", help="deprecated: the same as --level scan"
    )
    p.add_argument("--model", required=True, help="box: checkpoint (best.pt); scan: model folder (model.onnx + .json)")
    p.add_argument("--data", required=True, help="dataset folder in the xray format")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", default=None, help="folder for the report and plots (default: print only)")
    box = p.add_argument_group("box level")
    box.add_argument("--batch-size", type=int, default=None, help="default 4")
    box.add_argument("--workers", type=int, default=None, help="default 0")
    box.add_argument("--device", default=None, help="cpu (default) or cuda")
    scan = p.add_argument_group("scan level")
    scan.add_argument("--limit", type=int, default=None, help="use at most this many scans")
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    swap = p.add_argument_group("swap test (--swap): true vs swapped declarations, for archives without boxes")
    swap.add_argument(
        "--swap",
        action="store_true",
        help="score each scan with its declaration and one of another category; --model may be "
        "'baseline' (the simple floor only)",
    )
    swap.add_argument("--no-baseline", action="store_true", help="do not train and score the simple baseline")
    swap.add_argument("--baseline-split", default="train", help="split the baseline learns from (default: train)")
    swap.add_argument("--reference", default=None, help="per-site reference index (`xray reference build`)")
    swap.add_argument("--seed", type=int, default=0, help="seed of the swapped declarations")
    swap.add_argument("--false-alarm", default="0.05,0.01", help="false-alarm rates to report detection at")
    swap.add_argument(
        "--archive-truth",
        default=None,
        help="a stand-in archive's truth_loaded.csv: also report how its clerical errors are found",
    )
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    if args.swap:
        return _evaluate_swap(args)
    level = args.level or "box"
    if level == "scan":
        wrong = [
            f
            for f, v in (("--batch-size", args.batch_size), ("--workers", args.workers), ("--device", args.device))
            if v is not None
        ]
        if wrong:
            raise _UsageError(f"{', '.join(wrong)}: box-level options, not for --level scan")
        from xray.calibration import evaluate_verdicts

        report = evaluate_verdicts(
            args.model, args.data, split=args.split, out=args.out, limit=args.limit, progress=not args.quiet
        )
        print(json.dumps(report, indent=2))
        return 0
    if args.limit is not None:
        raise _UsageError("--limit: a scan-level option (--level scan)")
    from xray.train.evaluate import evaluate_main

    return evaluate_main(
        [
            "--model",
            args.model,
            "--data",
            args.data,
            "--split",
            args.split,
            *_flags(
                {"--batch-size": args.batch_size, "--workers": args.workers, "--device": args.device, "--out": args.out}
            ),
        ]
    )


def _false_alarms(value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in value.split(","))
    except ValueError as e:
        raise _UsageError(f"--false-alarm {value!r}: expected rates such as 0.05,0.01") from e
    if not rates or not all(0 < r < 1 for r in rates):
        raise _UsageError(f"--false-alarm {value!r}: each rate must be in (0, 1)")
    return rates


def _evaluate_swap(args: argparse.Namespace) -> int:
    if args.level == "box":
        raise _UsageError("--swap is a scan-level test (--level scan)")
    from xray.data.format import goods_table_name
    from xray.goods import goods_table
    from xray.swap import (
        BaselineScorer,
        ModelScorer,
        PairScorer,
        read_archive_truth,
        summary_table,
        swap_test,
        train_baseline,
        write_swap_report,
    )

    rates = _false_alarms(args.false_alarm)
    scorers: list[PairScorer] = []
    if args.model != "baseline":
        from xray.engine import Engine
        from xray.reference import ReferenceIndex, embedding_engine

        reference = ReferenceIndex.load(args.reference) if args.reference else None
        engine = Engine(args.model)
        scorers.append(
            ModelScorer(
                embedding_engine(engine, reference.embedding) if reference else engine,
                reference=reference,
                name="model",
            )
        )
    if args.model == "baseline" or not args.no_baseline:
        scorers.append(
            BaselineScorer(
                train_baseline(args.data, split=args.baseline_split, seed=args.seed, progress=not args.quiet),
                goods_table(goods_table_name(args.data)),
            )
        )
    truth = read_archive_truth(args.archive_truth) if args.archive_truth else None
    report = swap_test(
        scorers,
        args.data,
        split=args.split,
        seed=args.seed,
        limit=args.limit,
        false_alarms=rates,
        archive_truth=truth,
        progress=not args.quiet,
    )
    if args.out:
        write_swap_report(report, args.out)
    print(summary_table(report))
    return 0


# -- calibrate -------------------------------------------------------------------------------


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="set the verifier's thresholds to a false-alarm rate on a labelled split")
    p.add_argument("--model", required=True, help="model folder; its model.json gets the thresholds")
    p.add_argument("--data", required=True, help="dataset folder with truth.jsonl")
    p.add_argument("--split", default="val")
    p.add_argument("--false-alarm", type=float, default=0.01, help="largest share of matching scans sent to red")
    p.add_argument("--review-rate", type=float, default=None, help="largest share sent to yellow or red")
    p.add_argument("--limit", type=int, default=None, help="use at most this many scans")
    p.add_argument(
        "--flip",
        action="store_true",
        help="test-time augmentation: average each scan with its mirror image (one more model pass)",
    )
    guard = p.add_argument_group("out-of-domain guard")
    guard.add_argument(
        "--domain",
        action="store_true",
        help="calibrate the out-of-domain guard on in-domain scans of --data/--split instead of the "
        "verdict thresholds (adds a pooled-feature output to model.onnx if it has none)",
    )
    guard.add_argument(
        "--domain-target",
        type=float,
        default=None,
        help="share of in-domain scans each guard measure may flag (default: xray.domain.GUARD_TARGET)",
    )
    guard.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="NAME=DIR[:SPLIT]",
        help="also measure the flagged share of this dataset split (default split test); repeatable",
    )
    guard.add_argument("--no-foreign", action="store_true", help="skip measuring images that are not cargo scans")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--swap",
        action="store_true",
        help="archives without inspection outcomes: set red to the false-alarm rate on true "
        "declarations of the swap test",
    )
    p.add_argument("--reference", default=None, help="with --swap: per-site reference index to verify with")
    p.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    if args.domain:
        return _calibrate_domain(args)
    if args.measure or args.no_foreign:
        raise _UsageError("--measure, --no-foreign: guard options, only with --domain")
    if args.swap:
        from xray.calibration import calibrate_swap

        if args.flip:
            raise _UsageError("--flip: not with --swap")
        print(
            json.dumps(
                calibrate_swap(
                    args.model,
                    args.data,
                    split=args.split,
                    false_alarm=args.false_alarm,
                    review_rate=args.review_rate,
                    limit=args.limit,
                    reference=args.reference,
                    progress=not args.quiet,
                ),
                indent=2,
            )
        )
        return 0
    if args.reference:
        raise _UsageError("--reference: an option of --swap")
    from xray.calibration import calibrate_model

    result = calibrate_model(
        args.model,
        args.data,
        split=args.split,
        false_alarm=args.false_alarm,
        review_rate=args.review_rate,
        limit=args.limit,
        progress=not args.quiet,
        flip=args.flip,
    )
    print(json.dumps(result, indent=2))
    return 0


def _calibrate_domain(args: argparse.Namespace) -> int:
    from xray.calibration import calibrate_domain
    from xray.domain import GUARD_TARGET

    measure: dict[str, tuple[str | Path, str]] = {}
    for item in args.measure:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise _UsageError(f"--measure {item!r}: expected NAME=DIR or NAME=DIR:SPLIT")
        root, _, split = where.partition(":")
        measure[name] = (root, split or "test")
    result = calibrate_domain(
        args.model,
        args.data,
        split=args.split,
        target=GUARD_TARGET if args.domain_target is None else args.domain_target,
        limit=args.limit,
        progress=not args.quiet,
        measure=measure,
        foreign=not args.no_foreign,
    )
    print(json.dumps(result, indent=2))
    return 0


# -- export ----------------------------------------------------------------------------------


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX with its model card",
        description="Export a checkpoint to ONNX with a model card (parity-checked against PyTorch).",
    )
    p.add_argument("checkpoint", help="training checkpoint, e.g. runs/NAME/best.pt")
    p.add_argument("--out", required=True, help="output folder, e.g. models/NAME")
    p.add_argument("--data", default=None, help="dataset to evaluate into the card and feed the parity check")
    p.add_argument("--split", default=None, help="split of --data (default: test)")
    p.add_argument("--parity-n", type=int, default=None, help="inputs in the parity check (default 4)")
    p.add_argument("--latency-runs", type=int, default=None, help="measure ORT latency (2 threads) over N runs")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from xray.export import export_main

    return export_main(
        [
            args.checkpoint,
            *_flags(
                {
                    "--out": args.out,
                    "--data": args.data,
                    "--split": args.split,
                    "--parity-n": args.parity_n,
                    "--latency-runs": args.latency_runs,
                }
            ),
        ]
    )


# -- quantize --------------------------------------------------------------------------------


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8 copy of an exported model, calibrated on scans",
        description="Static INT8 quantisation (onnxruntime, QDQ) of an exported model, calibrated on a dataset "
        "split; the card records the calibration set and both precisions' latency and accuracy.",
    )
    p.add_argument("model", help="exported FP32 model folder (model.onnx + model.json)")
    p.add_argument("--out", required=True, help="folder for the INT8 model, e.g. models/NAME-int8")
    p.add_argument("--data", required=True, help="dataset whose scans calibrate the activation ranges")
    p.add_argument("--split", default=None, help="calibration split of --data (default: val)")
    p.add_argument("--scans", type=int, default=None, help="calibration scans (default 150)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument("--ops", default=None, help="network (default): every int8-capable op of the network; conv")
    p.add_argument("--exclude", nargs="*", default=None, help="nodes left in float (default: the stem blocks)")
    p.add_argument("--quantise-hardswish", action="store_true", help="also quantise convs feeding a hard-swish")
    p.add_argument("--method", default=None, help="calibration: minmax (default), entropy, percentile")
    p.add_argument("--latency-runs", type=int, default=None, help="model-only latency runs per precision (default 30)")
    p.add_argument("--evaluate", default=None, help="labelled split of --data to compare both models' verdicts on")
    p.add_argument("--evaluate-limit", type=int, default=None, help="use at most this many scans of --evaluate")
    p.set_defaults(func=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    from xray.quantize import quantize_main

    passed = {k: v for k, v in vars(args).items() if k not in ("model", "exclude", "func", "command")}
    flags = {f"--{k.replace('_', '-')}": v for k, v in passed.items()}
    exclude = [] if args.exclude is None else ["--exclude", *args.exclude]
    return quantize_main([args.model, *_flags(flags), *exclude])


# -- inspect ---------------------------------------------------------------------------------


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="inspect one scan against its manifest: verdict JSON and overlay")
    p.add_argument("scan", help="scan file (PNG, TIFF, JPEG, DICOS); the high energy for dual-energy pairs")
    p.add_argument("--low", default=None, help="low-energy file of a dual-energy pair")
    p.add_argument("--manifest", required=True, help="manifest JSON")
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--overlay", default=None, help="write the evidence picture here (PNG)")
    p.add_argument("--pixel-mm", type=float, default=None, help="pixel spacing when the file does not carry it")
    p.add_argument("--tile", action="store_true", help="add tiles for scans much larger than the model input")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    _add_execution(p)
    p.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    import cv2

    from xray.bundled import default_model_dir
    from xray.engine import Engine
    from xray.manifest import Manifest
    from xray.overlay import draw_overlay
    from xray.sources.files import read_scan
    from xray.verify import Inspector

    pixel_mm = (args.pixel_mm, args.pixel_mm) if args.pixel_mm else None
    scan = read_scan(args.scan, args.low, pixel_mm=pixel_mm)
    manifest = Manifest.load(args.manifest)
    engine = Engine(args.model or default_model_dir(), threads=args.threads, tile=args.tile, execution=_execution(args))
    engine.warm_up()
    verdict = Inspector(engine).inspect(scan, manifest)
    print(verdict.model_dump_json(indent=2))
    if args.overlay:
        cv2.imwrite(args.overlay, draw_overlay(scan, verdict))
        print(f"overlay written to {args.overlay}", file=sys.stderr)
    t = verdict.timings_ms
    print("timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()), file=sys.stderr)
    return 0


# -- serve -----------------------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from xray.bundled import default_model_dir

    p = sub.add_parser(
        "serve",
        help="start the inspection service: HTTP API, operator console, audit store",
        description="Start the inspection service: HTTP API, operator console at /, audit store, "
        "optional folder intake.",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"exported model folder (model.onnx + model.json); default: the bundled model ({default_model_dir()})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="images, overlays and the default database")
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the audit database (default: SQLite in --data-dir)")
    p.add_argument("--watch", type=Path, default=None, help="scanner drop folder to inspect scans from")
    p.add_argument("--no-auth", action="store_true", help="no API key (only allowed on a loopback --host)")
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accept this API key (stored hashed; also from $XRAY_API_KEY); repeatable",
    )
    # Defaults of these live in Settings (xray.service.settings); only what is given is passed on.
    p.add_argument("--max-in-flight", type=int, default=None, help="inspections admitted at once; more get 503 (8)")
    p.add_argument("--workers", type=int, default=None, help="threads running inspections (2)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per inference (all cores)")
    p.add_argument("--tile", action="store_true", help="tile scans much larger than the model input")
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=None,
        help="longest wait for concurrent scans to join one engine batch; 0: no batching",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="most scans per engine batch (with --ray: per replica micro-batch, default 4); 1: no batching",
    )
    p.add_argument("--log-level", default="info")
    _add_execution(p)
    ray = p.add_argument_group("Ray Serve (a network of scan centres: replicas, micro-batches)")
    ray.add_argument("--ray", action="store_true", help="serve the same app as a Ray Serve deployment")
    ray.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    ray.add_argument("--replicas", type=int, default=1, help="replicas of the deployment (default 1)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from xray.bundled import default_model_dir

    model = args.model or default_model_dir()
    if not (model / "model.onnx").is_file():
        raise XrayError(
            f"{model} is not an exported model folder (no model.onnx); train and export one, or pass --model DIR"
        )
    import uvicorn
    from pydantic import ValidationError

    from xray.service import Settings, create_app

    keys = tuple(args.api_key) + ((os.environ["XRAY_API_KEY"],) if os.environ.get("XRAY_API_KEY") else ())
    # Only what was given: the defaults live in Settings (or come from XRAY_* variables).
    given = {
        "max_in_flight": args.max_in_flight,
        "workers": args.workers,
        "threads": args.threads,
        "batch_window_ms": args.batch_window_ms,
        "max_batch": args.max_batch,
    }
    tuning = {k: v for k, v in given.items() if v is not None}
    try:
        settings = Settings(
            model_dir=model,
            data_dir=args.data_dir,
            db_url=args.db,
            host=args.host,
            auth=not args.no_auth,
            api_keys=keys,
            watch_dir=args.watch,
            tile=args.tile,
            execution=_execution(args),
            **tuning,
        )
    except ValidationError as e:  # an out-of-range option or XRAY_* variable, named
        raise _UsageError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from e
    os.umask(0o077)  # everything the service writes (database, images, overlays, key file) is this user's only
    if args.ray:
        return _serve_ray(args, settings)
    if args.ray_address or args.replicas != 1:
        raise _UsageError("--ray-address and --replicas are options of --ray")
    app = create_app(settings)  # ConfigError (an XrayError) for settings that cannot run
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"xray console: http://{host}:{args.port}/   API docs: http://{host}:{args.port}/docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0


def _serve_ray(args: argparse.Namespace, settings: Settings) -> int:
    import time

    import ray
    from ray import serve

    from xray.service.ray_serve import MAX_BATCH, deploy, proxy_environment, ray_settings

    max_batch = args.max_batch or MAX_BATCH
    ray_settings(settings, max_batch)  # settings Ray cannot run are refused before a cluster starts
    proxy_environment()
    ray.init(address=args.ray_address, include_dashboard=False)
    try:
        deploy(settings, port=args.port, replicas=args.replicas, max_batch=max_batch)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"xray on Ray Serve, {args.replicas} replica(s): http://{host}:{args.port}/  (Ctrl-C stops)", flush=True)
        while True:  # the deployment runs in the cluster; this process holds it until Ctrl-C
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()


# -- rescore ---------------------------------------------------------------------------------


def _add_rescore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rescore",
        help="re-score a whole archive with a model: Parquet rows and audit-store records; resumes after a stop",
        description="Re-score every scan of an archive (a dataset folder, e.g. from `xray dataset import archive`) "
        "with a model. One Parquet row per scan in OUT/parts, one record per scan in the audit store. "
        "Run it again with the same --out to resume: nothing is lost or scored twice.",
    )
    p.add_argument("archive", help="dataset folder in the xray format (datasets/FORMAT.md)")
    p.add_argument("--out", required=True, help="output folder (Parquet parts and run.json)")
    p.add_argument("--model", default=None, help="exported model folder (default: the bundled model)")
    p.add_argument("--split", default=None, help="only this split (default: all)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="the audit store's data folder")
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the audit database (default: SQLite in --data-dir)")
    p.add_argument("--store-images", action="store_true", help="also copy the scan files into the audit store")
    p.add_argument("--batch-size", type=int, default=None, help="scans per batched engine call (default 8)")
    p.add_argument("--part-size", type=int, default=None, help="scans per committed Parquet part (default 256)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many scans now (the rest on resume)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per scorer (default: all; 1 on Ray)")
    p.add_argument("--tile", action="store_true", help="tile scans much larger than the model input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = p.add_argument_group("Ray Data")
    ray.add_argument("--ray", action="store_true", help="score with Ray Data actors (map_batches)")
    ray.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    ray.add_argument("--workers", type=int, default=None, help="scoring actors (default: the cluster's CPUs)")
    p.set_defaults(func=_rescore)


def _rescore(args: argparse.Namespace) -> int:
    from xray.rescore import rescore

    if not args.ray and (args.ray_address or args.workers is not None):
        raise _UsageError("--ray-address and --workers are options of --ray")
    if args.ray:
        import ray

        ray.init(address=args.ray_address, include_dashboard=False)
    summary = rescore(
        args.archive,
        args.out,
        model_dir=args.model,
        data_dir=args.data_dir,
        db_url=args.db,
        split=args.split,
        use_ray=args.ray,
        workers=args.workers,
        threads=args.threads,
        limit=args.limit,
        store_images=args.store_images,
        tile=args.tile,
        progress=not args.quiet,
        **{k: v for k, v in (("batch_size", args.batch_size), ("part_size", args.part_size)) if v is not None},
    )
    for bad in summary.failed:
        print(f"xray rescore: scan {bad['scan_id']} not scored: {bad['error']}", file=sys.stderr)
    print(json.dumps(summary.as_dict() | {"failed": len(summary.failed)}, indent=2))
    return 0


# -- keys ------------------------------------------------------------------------------------


def _add_keys(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list or revoke the service's API keys (stored as salted hashes)",
        description="Manage the API keys of the service's audit database. A created key is shown "
        "once, here; a revoked key stops working at once, also in a running service.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
    create = actions.add_parser("create", help="make a key and print it (only now: only its hash is stored)")
    create.add_argument("--label", default="", help="what the key is for (e.g. the lane or the client)")
    actions.add_parser("list", help="the keys' ids, labels, creation times and whether revoked (never the keys)")
    revoke = actions.add_parser("revoke", help="revoke a key by its id (as `xray keys list` shows it)")
    revoke.add_argument("key_id")
    for a in actions.choices.values():
        a.add_argument("--data-dir", type=Path, default=Path("data"), help="the service's data folder")
        a.add_argument(
            "--db", default=None, help="SQLAlchemy URL of the audit database (default: SQLite in --data-dir)"
        )
    p.set_defaults(func=_keys)


def _keys(args: argparse.Namespace) -> int:
    from xray.service.auth import create_key
    from xray.service.store import Store

    os.umask(0o077)
    store = Store(args.data_dir, args.db)
    try:
        if args.action == "create":
            if len(args.label) > 100:
                raise _UsageError("--label is at most 100 characters")
            key, key_id = create_key(store, label=args.label)
            print(f"key id {key_id}; the key (shown only now, store it safely):", file=sys.stderr)
            print(key)
        elif args.action == "list":
            for row in store.keys():
                revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
                print(
                    f"{row.key_id}\tcreated {row.created.isoformat(timespec='seconds')}\trevoked {revoked}\t{row.label}"
                )
        elif not store.revoke_key(args.key_id):
            raise XrayError(f"no key with id {args.key_id!r} (see `xray keys list`)")
        else:
            print(f"revoked {args.key_id}")
    finally:
        store.close()
    return 0


# -- simulate --------------------------------------------------------------------------------


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a labeled dataset of cargo scans (the virtual scanner)")
    p.add_argument("--out", required=True, help="dataset folder to create (must be new or empty)")
    p.add_argument("--count", type=int, required=True, help="number of scans")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same bytes)")
    p.add_argument("--size", choices=["20ft", "40ft", "mixed"], default="mixed", help="container size")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument(
        "--mismatch-rate",
        type=float,
        default=None,
        help="fraction of scans whose manifest is wrong (default 0.3; 0 with --archive)",
    )
    p.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test fractions")
    p.add_argument("--compress", action="store_true", help="deflate the PNGs (~2/3 the size, ~10x slower to write)")
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME[,NAME...]",
        help="scanner profiles (xray/simulate/profiles); several mix, one per scan (default: none)",
    )
    p.add_argument(
        "--scene",
        choices=["container", "parcel"],
        default="container",
        help="container: cargo scans (default); parcel: parcels and bags on a baggage scanner's "
        "conveyor, 8-bit pseudo-colour, with declarations (xray.simulate.parcel)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    arch = p.add_argument_group("stand-in archive (scan files + declarations.csv, no boxes)")
    arch.add_argument(
        "--archive",
        action="store_true",
        help="write a customs archive for `xray dataset import archive` instead of a dataset "
        "(default profile export-8bit-jpeg)",
    )
    arch.add_argument(
        "--wrong-declarations",
        type=float,
        default=None,
        help="share of declarations naming another category than the goods loaded (default 0.1)",
    )
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    if args.archive:
        return _simulate_archive(args)
    if args.wrong_declarations is not None:
        raise _UsageError("--wrong-declarations: an option of --archive")
    from xray.simulate.dataset import generate_dataset

    try:
        train, val, test = (float(v) for v in args.splits.split(","))
    except ValueError as e:
        raise _UsageError(f"--splits {args.splits!r}: expected three fractions train,val,test, e.g. 0.8,0.1,0.1") from e
    if args.scene == "parcel":
        from xray.simulate.parcel import generate_parcel_dataset

        if args.profile or args.size != "mixed":
            raise _UsageError("--profile and --size are container-scene options, not for --scene parcel")
        summary = generate_parcel_dataset(
            args.out, count=args.count, seed=args.seed, splits=(train, val, test), progress=not args.quiet
        )
        print(json.dumps(summary, indent=2))
        return 0
    summary = generate_dataset(
        args.out,
        count=args.count,
        seed=args.seed,
        size=args.size,
        workers=args.workers,
        mismatch_rate=0.3 if args.mismatch_rate is None else args.mismatch_rate,
        splits=(train, val, test),
        compress=args.compress,
        progress=not args.quiet,
        profiles=args.profile,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _simulate_archive(args: argparse.Namespace) -> int:
    from xray.simulate.archive import DEFAULT_PROFILE, generate_archive

    if args.compress or args.splits != "0.8,0.1,0.1":
        raise _UsageError("--compress and --splits are dataset options; an archive is split by `xray dataset import`")
    if args.profile is not None and "," in args.profile:
        raise _UsageError("--archive takes one --profile (one scanner per archive)")
    summary = generate_archive(
        args.out,
        count=args.count,
        seed=args.seed,
        profile=args.profile or DEFAULT_PROFILE,
        wrong_declarations=0.1 if args.wrong_declarations is None else args.wrong_declarations,
        mismatch_rate=args.mismatch_rate or 0.0,
        size=args.size,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(json.dumps(summary, indent=2))
    return 0


# -- dataset ---------------------------------------------------------------------------------


def _add_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="work with dataset folders in the xray format (datasets/FORMAT.md)")
    from xray.data.dataset_import import add_import_arguments, run_import

    actions = p.add_subparsers(dest="action", required=True, metavar="{import,check}")
    i = actions.add_parser(
        "import",
        help="turn a customs archive (scans + declarations), a COCO or a YOLO set "
        "into a dataset folder; bad files are reported and skipped",
    )
    add_import_arguments(i)
    i.set_defaults(func=run_import)
    c = actions.add_parser("check", help="validate a dataset folder; print scans, boxes and categories per split")
    c.add_argument("dir", help="dataset folder")
    c.set_defaults(func=_dataset_check)


def _dataset_check(args: argparse.Namespace) -> int:
    from xray.data.format import check_dataset

    print(json.dumps(check_dataset(args.dir), indent=2))
    return 0


# -- reference -------------------------------------------------------------------------------


def _add_reference(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reference", help="per-site reference index of cleared scans by HS code (verification by reference)"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="{build}")
    b = actions.add_parser("build", help="index the embeddings of a dataset split's cleared scans by HS heading")
    b.add_argument("--model", required=True, help="model folder whose engine fills the scan embedding")
    b.add_argument("--data", required=True, help="dataset folder (an imported archive)")
    b.add_argument("--split", default="train")
    b.add_argument("--out", required=True, help="folder for index.faiss and codes.json")
    b.add_argument(
        "--embedding",
        choices=("model", "thumbnail"),
        default="model",
        help="model: Detections.embedding; thumbnail: the stand-in until the model has one",
    )
    b.add_argument("--limit", type=int, default=None)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_reference_build)


def _reference_build(args: argparse.Namespace) -> int:
    from xray.engine import Engine
    from xray.reference import build_reference

    index = build_reference(
        Engine(args.model),
        args.data,
        split=args.split,
        embedding=args.embedding,
        limit=args.limit,
        progress=not args.quiet,
    )
    folder = index.save(args.out)
    print(
        json.dumps(
            {
                "out": str(folder),
                "embedding": index.embedding,
                "vectors": len(index.codes),
                "dim": index.dim,
                "headings": index.counts(),
            },
            indent=2,
        )
    )
    return 0


# -- the command -----------------------------------------------------------------------------


class _UsageError(XrayError):
    """Options that parse but do not go together; reported like argparse's own errors."""


_BUILDERS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_train,
    _add_evaluate,
    _add_calibrate,
    _add_export,
    _add_quantize,
    _add_inspect,
    _add_serve,
    _add_rescore,
    _add_keys,
    _add_simulate,
    _add_dataset,
    _add_reference,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xray", description="AI analysis of cargo X-ray scans. `xray MODE --help` for the options of a mode."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(MODES) + "}")
    for add in _BUILDERS:
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except XrayError as e:  # bad input, named; 2 as argparse's own usage errors
        print(f"xray {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
