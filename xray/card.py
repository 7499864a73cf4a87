"""The model card (`model.json`) written beside an exported `model.onnx`: what the model is,
what it takes and returns, how well it did on which data, how fast it runs, and where it
came from. The engine reads the card back (`input` is `xray.config.InputConfig`'s data).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from xray.atomic import write_atomic
from xray.config import BOX_FREE_FAMILIES, ExportConfig, FcosLiteConfig, XrayConfig
from xray.data.dataset import XrayDataset
from xray.goods import goods_table
from xray.provenance import git_commit, versions
from xray.runtime import create_session
from xray.train.evaluate import evaluate, evaluate_scan_level
from xray.train.metrics import dataset_info, public_metrics

CARD_FORMAT = 1


def latency_summary(times_ms: list[float], x: np.ndarray, threads: int) -> dict[str, Any]:
    """A card's latency entry: median, p90 and min of model-only runs on one input."""
    return {
        "input_shape": list(x.shape),
        "threads": threads,
        "runs": len(times_ms),
        "median_ms": float(np.median(times_ms)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "min_ms": float(np.min(times_ms)),
        "note": "onnxruntime CPUExecutionProvider, whole graph (network, decoding, NMS)",
    }


def measure_latency(onnx_path: str | Path, x: np.ndarray, *, runs: int = 30, threads: int = 2) -> dict[str, Any]:
    """onnxruntime CPU latency of one (1, C, H, W) input: median, p90 and min over `runs`."""
    session = create_session(onnx_path, threads=threads, providers=["CPUExecutionProvider"])
    for _ in range(3):  # warm-up: first runs allocate and pick kernels
        session.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1000)
    return latency_summary(times, x, threads)


def card_metrics(
    model: nn.Module, ckpt: dict[str, Any], cfg: XrayConfig, *, data: str | Path | None, split: str
) -> dict[str, Any]:
    """Metrics, each with the data it was measured on: the validation split during training,
    and `split` of `data` (e.g. the held-out test split) evaluated now when `data` is given."""
    metrics: dict[str, Any] = {
        "val": {"epoch": ckpt.get("epoch"), "data": ckpt.get("metrics_data"), **(ckpt.get("metrics") or {})}
    }
    if data is not None and cfg.model.name in BOX_FREE_FAMILIES:
        # Scan-level metrics against the split's declarations (or the boxed truth it trained on).
        ds = XrayDataset(data, split, spec=cfg.input, classes=ckpt["classes"], image_labels=cfg.train.image_labels)
        metrics[split] = {
            "data": {**dataset_info(Path(data)), "split": split, "scans": len(ds), "labels": cfg.train.image_labels},
            **evaluate_scan_level(model, ds),
        }
    elif data is not None:
        ds = XrayDataset(data, split, spec=cfg.input, classes=ckpt["classes"], image_labels="none")
        metrics[split] = {
            **metrics.get(split, {}),
            "data": {**dataset_info(Path(data)), "split": split, "scans": len(ds)},
            **public_metrics(evaluate(model, ds)[0]),
        }
    return metrics


def score_thresholds(export_cfg: ExportConfig, classes: list[str]) -> dict[str, float]:
    """The default operating threshold of each class (one for all, or per class)."""
    thresh = export_cfg.score_thresh
    return dict(thresh) if isinstance(thresh, dict) else {c: float(thresh) for c in classes}


def build_card(
    *,
    name: str,
    onnx_path: Path,
    model: nn.Module,
    cfg: XrayConfig,
    ckpt: dict[str, Any],
    checkpoint: str | Path,
    outputs: list[str],
    parity: dict[str, Any],
    metrics: dict[str, Any],
    latency: dict[str, Any] | None,
    opset: int,
) -> dict[str, Any]:
    """The card's content (see the module docstring)."""
    table = goods_table(cfg.goods_table)
    classes = list(ckpt["classes"])
    blob = onnx_path.read_bytes()
    spec = cfg.input
    return {
        "format": "xray-model",
        "format_version": CARD_FORMAT,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": onnx_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "architecture": {**cfg.model.model_dump(mode="json"), "params": sum(p.numel() for p in model.parameters())},
        "classes": classes,
        "goods_table": cfg.goods_table,  # the verifier maps declarations with this table
        "class_names": {c: table[c].name if c in table.keys else c for c in classes},
        "input": spec.to_dict(),
        "input_format": {
            "channels": spec.channels,
            "name": "input",
            "layout": "NCHW",
            "batch": 1,
            "dynamic_hw": True,
            "letterbox": "top-left, pad with air (A = 0)",
            "preprocess": "xray.model.preprocess.preprocess",
        },
        "outputs": scan_level_outputs(cfg, outputs)
        if not isinstance(cfg.model, FcosLiteConfig)
        else {
            "names": outputs,
            "boxes": "(N, 4) x1, y1, x2, y2 in model-input pixels",
            "scores": "(N,) sqrt(class probability x centre-ness)",
            "labels": "(N,) index into classes",
            "image_scores": "(K,) probability that each class is in the scan (image-level head)",
            "nms": "in graph, per class",
            "nms_iou": cfg.model.nms_thresh,
            "min_score": cfg.model.score_thresh,
            "max_detections": cfg.model.detections_per_img,
        },
        "score_thresholds": score_thresholds(cfg.export, classes),
        "metrics": metrics,
        "training": {
            "config": cfg.model_dump(mode="json"),
            "checkpoint": str(checkpoint),
            "epochs_trained": (ckpt["epoch"] + 1) if isinstance(ckpt.get("epoch"), int) else None,
            "data": training_data(ckpt),
            "versions": ckpt.get("versions"),
        },
        "export": {"exporter": "torch.onnx.export(dynamo=False)", "opset": opset, "parity": parity},
        "latency": latency,
        "versions": versions(),
        "git_commit": git_commit(),
    }


def training_data(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset the checkpoint was trained on, as its validation figures name it, with the scanner
    profiles at the top: the held-out benchmark reports them, and a profile absent here was never seen."""
    seen = ckpt.get("data") or ckpt.get("metrics_data")  # older checkpoints: only the val figures' data
    if not seen:
        return None
    data = {k: v for k, v in seen.items() if k != "split"}
    return {**data, "profiles": (data.get("params") or {}).get("profiles")}


def scan_level_outputs(cfg: XrayConfig, outputs: list[str]) -> dict[str, Any]:
    """The card's `outputs` section of a box-free scan-level model (the engine reads `region_thresh`)."""
    return {
        "names": outputs,
        "image_scores": "(K,) probability that each class is in the scan (pooled region maps)",
        "embedding": "(D,) unit-length scan embedding (verification by reference)",
        "region_maps": "(K, h, w) per-cell class probabilities at `stride` model-input pixels per cell",
        "stride": getattr(cfg.model, "stride", None),
        "region_thresh": getattr(cfg.model, "region_thresh", 0.5),
    }


def write_card(path: str | Path, card: dict[str, Any]) -> Path:
    """Write the card as JSON (tuples as lists), atomically: the engine may be reading the folder."""
    text = json.dumps(card, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    return write_atomic(path, text)
