"""INT8: static quantisation of an exported model with onnxruntime's tools.

`quantize_model` turns a model folder (model.onnx + model.json) into a new one whose graph
is quantised to 8 bits (QDQ format: weights int8, per output channel; activations uint8),
with activation ranges calibrated on real scans of a dataset split run through the
engine's own preprocessing (`Engine.model_inputs`, and the mirrored pass when the card
has `engine.flip`). Only the network's arithmetic (Conv, Gemm) is quantised; the decoding,
NMS and the outputs stay float, so the graph keeps the FP32 model's input and outputs
(`features` included) and the Engine runs it unchanged.

The card is the FP32 card with `precision: int8` and a `quantization` section: the tool
and its settings, the calibration set, how close the outputs stay to FP32 on held-out
scans of the same split, the model-only latency of both, and (with `evaluate`) the
scan-level verdict figures of both on a labelled split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from xray.card import latency_summary, write_card
from xray.data.dataset import XrayDataset
from xray.detection import box_iou
from xray.engine import Engine
from xray.errors import ConfigError, XrayError
from xray.provenance import git_commit, versions
from xray.runtime import create_session
from xray.train.metrics import dataset_info

# What gets int8 (`select_nodes`). Measured on the bundled model, 2-core EPYC (VNNI), CPU time
# of one run, 1 thread: FP32 9.1-9.5 ms; Conv + Gemm everywhere 9.9-10.4 ms (slower); every
# int8-capable op in the network 9.0 ms; leaving the convs that feed a hard-swish in float
# 8.1-9.0 ms; and also the two full-resolution stem blocks 7.8-8.8 ms (1.15-1.2x).
# The network's modules: their nodes may be quantised; the decoding, NMS and outputs stay float.
NETWORK_SCOPES = ("/model/backbone/", "/model/head/", "/model/image_head/")
# Ops with int8 kernels in onnxruntime's CPU provider (QLinear*, or removed in the fusion).
NETWORK_OPS = ("Conv", "Gemm", "Add", "Mul", "GlobalAveragePool", "MaxPool", "Resize", "Concat", "Relu")
CONV_OPS = ("Conv", "Gemm")
# The stem and first block at full resolution: quantising them costs a layout change and a
# quantise of the largest tensors, more than their int8 convs save.
FLOAT_STEM = ("/model/backbone/body/body.0/", "/model/backbone/body/body.1/")
# Activations without an int8 kernel: a conv feeding one would be wrapped in DQ -> act -> Q,
# which costs more than FP32's conv with the activation fused.
FLOAT_ACTIVATIONS = ("HardSwish", "HardSigmoid")
CALIBRATION_SCANS = 150
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FIDELITY_SCANS = 8


class ScanCalibration(CalibrationDataReader):
    """Feeds `quantize_static` model inputs made from a dataset split's scans, as the engine
    makes them: one feed per `get_next`, None at the end. Scans are read and preprocessed
    one at a time, as the calibrator asks for them."""

    def __init__(self, engine: Engine, scans: XrayDataset, indices: Sequence[int]) -> None:
        self.engine = engine
        self.scans = scans
        self.indices = list(indices)
        self.inputs = 0
        self._feeds = self._generate()

    def _generate(self) -> Iterator[dict[str, np.ndarray]]:
        for i in self.indices:
            for x in engine_inputs(self.engine, self.scans.scan(i)):
                self.inputs += 1
                yield {"input": x[None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def engine_inputs(engine: Engine, scan: Any) -> list[np.ndarray]:
    """The whole-scan model inputs the engine runs on a scan: the letterboxed scan and, with
    flip on, its mirror image (padding left in place, as `Engine.detect` makes it)."""
    p = engine.model_inputs(scan)[0]
    if not engine.flip:
        return [p.x]
    rw = p.lb.resized_hw[1]
    x = p.x.copy()
    x[:, :, :rw] = p.x[:, :, :rw][:, :, ::-1]
    return [p.x, x]


def select_nodes(
    onnx_path: Path, *, ops: str = "network", exclude: Sequence[str] = FLOAT_STEM, float_activations: bool = True
) -> tuple[list[str], list[str], list[str]]:
    """Which nodes to quantise: (op types, nodes to quantise, nodes left in float).

    Args:
        ops: `network`: every op with an int8 kernel inside NETWORK_SCOPES (falls back to
            `conv` for a graph without those modules); `conv`: Conv and Gemm anywhere.
        exclude: Nodes left in float: names, name prefixes, `first` (the first conv) or
            `last` (the last one).
        float_activations: Leave in float the convs that feed an activation without an
            int8 kernel (FLOAT_ACTIVATIONS).

    Raises:
        ConfigError: an unknown `ops`, or an `exclude` entry that matches no node.
    """
    import onnx

    if ops not in ("network", "conv"):
        raise ConfigError(f"ops must be `network` or `conv`, got {ops!r}")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes = list(graph.node)
    in_network = [n for n in nodes if n.name.startswith(NETWORK_SCOPES)]
    op_types: tuple[str, ...]
    if ops == "network" and any(n.op_type == "Conv" for n in in_network):
        op_types, candidates = NETWORK_OPS, in_network
    else:
        op_types, candidates = CONV_OPS, nodes
    candidates = [n for n in candidates if n.op_type in op_types]
    convs = [n.name for n in nodes if n.op_type in CONV_OPS]
    skip: list[str] = []
    for e in exclude:
        hit = (
            convs[:1]
            if e == "first"
            else convs[-1:]
            if e == "last"
            else [n.name for n in candidates if n.name == e or n.name.startswith(e)]
        )
        if not hit and e not in FLOAT_STEM:  # the default prefixes may name nothing in another family
            raise ConfigError(f"exclude {e!r}: no node of that name or prefix among the quantisable ones")
        skip += hit
    if float_activations:
        consumers: dict[str, set[str]] = {}
        for n in nodes:
            for i in n.input:
                consumers.setdefault(i, set()).add(n.op_type)
        skip += [
            n.name
            for n in candidates
            if n.op_type == "Conv" and consumers.get(n.output[0], set()) & set(FLOAT_ACTIVATIONS)
        ]
    skip = list(dict.fromkeys(skip))
    return list(op_types), [n.name for n in candidates if n.name not in set(skip)], skip


def fidelity(fp32: Engine, int8: Engine, scans: XrayDataset, indices: Sequence[int]) -> dict[str, Any]:
    """How close the INT8 graph's outputs stay to FP32's on the same inputs.

    Image scores and features are compared directly; detections above their class's card
    threshold are matched one to one (same class, IoU >= 0.5).
    """
    thresholds = np.array([float(fp32.card.get("score_thresholds", {}).get(c, 0.3)) for c in fp32.classes])
    img_diff: list[float] = []
    cos: list[float] = []
    kept = matched = 0
    n = 0
    for i in indices:
        for x in engine_inputs(fp32, scans.scan(i)):
            a, b = fp32._run(x), int8._run(x)
            n += 1
            if "image_scores" in a:
                img_diff.append(float(np.abs(np.asarray(a["image_scores"]) - np.asarray(b["image_scores"])).max()))
            if "features" in a:
                fa, fb = np.asarray(a["features"]).ravel(), np.asarray(b["features"]).ravel()
                cos.append(float(fa @ fb / max(np.linalg.norm(fa) * np.linalg.norm(fb), 1e-12)))
            if "boxes" in a:
                la, lb_ = np.asarray(a["labels"]).astype(int), np.asarray(b["labels"]).astype(int)
                ka = np.asarray(a["scores"]) >= thresholds[la]
                kb = np.asarray(b["scores"]) >= thresholds[lb_]
                ba, bb = np.asarray(a["boxes"])[ka], np.asarray(b["boxes"])[kb]
                kept += int(ka.sum())
                if len(ba) and len(bb):
                    ok = (box_iou(ba, bb) >= 0.5) & (la[ka][:, None] == lb_[kb][None, :])
                    used = np.zeros(len(bb), bool)
                    for row in ok:
                        j = np.flatnonzero(row & ~used)
                        if len(j):
                            used[j[0]] = True
                            matched += 1
    return {
        "inputs": n,
        "image_scores_max_abs_diff": max(img_diff, default=None),
        "image_scores_mean_max_abs_diff": float(np.mean(img_diff)) if img_diff else None,
        "features_min_cosine": min(cos, default=None),
        "detections_fp32": kept,
        "detections_matched": matched,
    }


def compare_latency(fp32: Path, int8: Path, x: np.ndarray, *, runs: int, threads: int = 2) -> dict[str, Any]:
    """Model-only latency of both graphs on one (1, C, H, W) input, runs interleaved (one of
    each in turn) so that load from other processes falls on both alike. With one thread the
    run's CPU time is recorded too: on a shared machine it moves far less than wall time."""
    sessions = {
        k: create_session(p, threads=threads, providers=["CPUExecutionProvider"])
        for k, p in (("fp32", fp32), ("int8", int8))
    }
    wall: dict[str, list[float]] = {k: [] for k in sessions}
    cpu: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(runs + 3):  # 3 warm-up runs each: the first runs allocate and pick kernels
        for k, s in sessions.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            s.run(None, {"input": x})
            if i >= 3:
                wall[k].append((time.perf_counter() - t0) * 1e3)
                cpu[k].append((time.thread_time() - c0) * 1e3)
    out: dict[str, Any] = {}
    for k, t in wall.items():
        out[k] = latency_summary(t, x, threads)
        if threads == 1:  # the run is on this thread: its CPU time is the run's
            out[k]["cpu_median_ms"] = float(np.median(cpu[k]))
    out["speedup_median"] = out["fp32"]["median_ms"] / out["int8"]["median_ms"]
    out["speedup_min"] = out["fp32"]["min_ms"] / out["int8"]["min_ms"]
    if threads == 1:
        out["speedup_cpu"] = out["fp32"]["cpu_median_ms"] / out["int8"]["cpu_median_ms"]
    return out


def verdict_figures(model_dir: Path, data: Path, split: str, limit: int | None) -> dict[str, Any]:
    """Scan-level verdict figures of a model on a labelled split (`evaluate_verdicts`), the headline keys."""
    from xray.calibration import evaluate_verdicts

    r = evaluate_verdicts(model_dir, data, split=split, limit=limit, progress=False)
    keep = ("scans", "mismatches", "red_threshold", "detection_rate", "false_alarm_rate", "roc_auc", "channels")
    return {k: r.get(k) for k in keep}


def quantize_model(
    model_dir: str | Path,
    out: str | Path,
    *,
    data: str | Path,
    split: str = "val",
    scans: int = CALIBRATION_SCANS,
    per_channel: bool = True,
    reduce_range: bool = False,
    ops: str = "network",
    exclude: Sequence[str] = FLOAT_STEM,
    float_activations: bool = True,
    method: str = "minmax",
    latency_runs: int = 30,
    evaluate: str | None = None,
    evaluate_limit: int | None = None,
) -> dict[str, Any]:
    """Model folder -> OUT/model.onnx (INT8, QDQ) + OUT/model.json. Returns the card.

    Args:
        model_dir: An exported FP32 model folder.
        out: Folder to write into (not `model_dir`).
        data, split: Dataset split whose first `scans` scans calibrate the activation ranges;
            the next FIDELITY_SCANS scans measure how far the outputs move.
        per_channel: One weight scale per output channel (depthwise convs need it).
        reduce_range: 7-bit weights, for CPUs without VNNI where u8s8 products can saturate.
        ops, exclude, float_activations: Which nodes get int8 (see `select_nodes`).
        method: Calibration method: minmax, entropy or percentile (the histogram methods
            keep every input's activations in memory: use few scans).
        latency_runs: Model-only latency runs for each precision (0: not measured).
        evaluate: A labelled split of `data` (e.g. test) to evaluate both models' verdicts on.

    Raises:
        ConfigError: bad options or a model folder that is not one.
        DatasetError: a dataset that does not follow the format.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out, data = Path(model_dir), Path(out), Path(data)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ConfigError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    if scans < 1:
        raise ConfigError(f"calibration needs at least one scan, got {scans}")
    if out.resolve() == model_dir.resolve():
        raise ConfigError(f"{out}: the INT8 model needs its own folder (the FP32 model is read from it)")
    engine = Engine(model_dir, threads=None)
    if engine.card.get("precision", "fp32") != "fp32":
        raise ConfigError(f"{model_dir}: already quantised ({engine.card['precision']})")
    ds = XrayDataset(data, split, spec=engine.spec, classes=engine.classes, image_labels="none")
    if len(ds) == 0:
        raise ConfigError(f"{data}: split {split!r} has no scans to calibrate on")
    n_cal = min(scans, len(ds))
    held_out = range(n_cal, min(len(ds), n_cal + FIDELITY_SCANS))
    src = model_dir / "model.onnx"
    out.mkdir(parents=True, exist_ok=True)
    dst = out / "model.onnx"
    reader = ScanCalibration(engine, ds, range(n_cal))
    with tempfile.TemporaryDirectory(prefix="xray-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference first, as onnxruntime recommends. Its graph optimisation is skipped:
        # the export already folded constants and batch norms, and it would split each
        # HardSwish into HardSigmoid * x (two float ops between int8 convs).
        quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
        op_types, chosen, skip = select_nodes(pre, ops=ops, exclude=exclude, float_activations=float_activations)
        quantize_static(
            str(pre),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=op_types,
            nodes_to_quantize=chosen,
            nodes_to_exclude=skip,
            calibrate_method=getattr(CalibrationMethod, {"minmax": "MinMax"}.get(method, method.title())),
            # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 MinMax drops (does not merge) the
            # ranges of each full chunk, so only the last partial chunk would calibrate. MinMax keeps
            # two scalars per tensor and input, so all inputs fit.
        )
    card = _card(engine.card, dst, out.name)
    card["quantization"] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process"
        "(skip_optimization=True, skip_symbolic_shape=True)",
        "format": "QDQ",
        "activations": "uint8, per tensor, asymmetric",
        "weights": f"int8, {'per channel' if per_channel else 'per tensor'}, symmetric",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "ops": ops,
        "op_types": op_types,
        "nodes_quantised": len(chosen),
        "nodes_float": skip,
        "calibration": {
            "data": {**dataset_info(data), "split": split},
            "scans": n_cal,
            "inputs": reader.inputs,
            "method": method,
            "preprocess": "xray.engine.Engine.model_inputs (whole scan" + (", and mirrored)" if engine.flip else ")"),
        },
        "source": {
            "dir": str(model_dir),
            "name": engine.card.get("name"),
            "sha256": engine.card.get("sha256"),
            "size_bytes": engine.card.get("size_bytes"),
            "metrics": engine.card.get("metrics"),
        },
    }
    write_card(out / "model.json", card)
    int8 = Engine(out, threads=None)
    card["quantization"]["fidelity"] = {"split": split, "scans": len(held_out), **fidelity(engine, int8, ds, held_out)}
    if latency_runs > 0:
        x = engine_inputs(engine, ds.scan(0))[0][None]
        card["quantization"]["latency"] = compare_latency(src, dst, x, runs=latency_runs)
        card["quantization"]["latency_one_thread"] = compare_latency(src, dst, x, runs=latency_runs, threads=1)
        card["latency"] = card["quantization"]["latency"]["int8"]
    if evaluate:
        card["quantization"]["accuracy"] = {
            "data": str(data),
            "split": evaluate,
            "fp32": verdict_figures(model_dir, data, evaluate, evaluate_limit),
            "int8": verdict_figures(out, data, evaluate, evaluate_limit),
        }
    write_card(out / "model.json", card)
    return card


def _card(fp32: dict[str, Any], onnx_path: Path, name: str) -> dict[str, Any]:
    """The FP32 card with what the quantised graph changes: file, hash, size, precision.

    Box metrics were measured on the FP32 model; they move to `quantization.source`.
    Thresholds, the verifier's calibration and the domain guard are kept: the INT8 model
    is meant to run at the FP32 operating point, and its figures there are what
    `quantization.accuracy` reports.
    """
    blob = onnx_path.read_bytes()
    return {
        **fp32,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": onnx_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "precision": "int8",
        "metrics": {},
        "latency": None,
        "versions": versions(),
        "git_commit": git_commit(),
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray quantize", description=__doc__.splitlines()[0])
    p.add_argument("model", help="exported FP32 model folder (model.onnx + model.json)")
    p.add_argument("--out", required=True, help="folder for the INT8 model, e.g. models/NAME-int8")
    p.add_argument("--data", required=True, help="dataset whose scans calibrate the activation ranges")
    p.add_argument("--split", default="val", help="calibration split of --data (default: val)")
    p.add_argument(
        "--scans", type=int, default=CALIBRATION_SCANS, help=f"calibration scans (default {CALIBRATION_SCANS})"
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument(
        "--ops",
        choices=("network", "conv"),
        default="network",
        help="network (default): every int8-capable op of the network; conv: Conv and Gemm anywhere",
    )
    p.add_argument(
        "--exclude",
        nargs="*",
        default=list(FLOAT_STEM),
        help="nodes left in float: names, name prefixes, `first`, `last` (default: the stem blocks)",
    )
    p.add_argument(
        "--quantise-hardswish",
        action="store_true",
        help="also quantise the convs that feed a hard-swish (default: left in float, faster)",
    )
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax", help="activation range calibration")
    p.add_argument("--latency-runs", type=int, default=30, help="model-only latency runs per precision (0: skip)")
    p.add_argument("--evaluate", default=None, help="labelled split of --data to compare both models' verdicts on")
    p.add_argument("--evaluate-limit", type=int, default=None, help="use at most this many scans of --evaluate")
    return p


def quantize_main(argv: Sequence[str] | None = None) -> int:
    """The `xray quantize` command; returns an exit code (2 on bad input)."""
    args = get_args_parser().parse_args(argv)
    try:
        card = quantize_model(
            args.model,
            args.out,
            data=args.data,
            split=args.split,
            scans=args.scans,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            ops=args.ops,
            exclude=args.exclude,
            float_activations=not args.quantise_hardswish,
            method=args.method,
            latency_runs=args.latency_runs,
            evaluate=args.evaluate,
            evaluate_limit=args.evaluate_limit,
        )
    except XrayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    q = card["quantization"]
    keys = ("calibration", "fidelity", "latency", "latency_one_thread", "accuracy")
    print(json.dumps({k: q[k] for k in keys if k in q}, indent=2))
    print(f"wrote {Path(args.out) / 'model.onnx'} ({card['size_bytes'] / 1e6:.1f} MB, int8) and model.json")
    return 0
