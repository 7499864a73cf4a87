"""Evaluation of a detector on a dataset split: predict in scan pixels, then score
(`xray.train.metrics`: COCO mAP by pycocotools, the confusion matrix).

`evaluate_main(argv)` is the `xray evaluate` command:
    xray evaluate --model runs/NAME/best.pt --data DATASET [--split test] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from xray.config import config_from_dict
from xray.data.dataset import XrayDataset, collate
from xray.errors import XrayError
from xray.model.factory import model_from_checkpoint
from xray.model.preprocess import fit
from xray.train import plots
from xray.train.metrics import coco_map, confusion_matrix, public_metrics, to_coco_results

__all__ = [
    "coco_map",
    "confusion_matrix",
    "evaluate",
    "evaluate_main",
    "evaluate_scan_level",
    "predict",
    "public_metrics",
    "scan_level_metrics",
    "to_coco_results",
]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: XrayDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int = 0,
) -> list[dict[str, Any]]:
    """Run the model over a dataset; detections in scan pixels, one dict per image.

    Returns:
        Dicts with `image_id`, `boxes` (N, 4) xyxy in scan pixels, `scores`, `labels`
        (class indices) as numpy, and `image_scores` (K,) when the model has an image head.
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    out = []
    input_hw = dataset.spec.size
    for images, targets, _ in loader:
        for det, tgt in zip(model(images.to(device)), targets):
            entry = dataset.coco.imgs[int(tgt["image_id"])]
            # The engine's mapping: the letterbox this scan was fitted into the input with.
            letterbox = fit((int(entry["height"]), int(entry["width"])), input_hw)
            boxes = letterbox.to_scan(det["boxes"].float().cpu().numpy())
            item = {
                "image_id": int(tgt["image_id"]),
                "boxes": boxes,
                "scores": det["scores"].float().cpu().numpy(),
                "labels": det["labels"].cpu().numpy(),
            }
            if "image_scores" in det:
                item["image_scores"] = det["image_scores"].float().cpu().numpy()
            out.append(item)
    return out


def evaluate(
    model: torch.nn.Module,
    dataset: XrayDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Predict a split and score it. Returns (metrics, predictions in scan pixels)."""
    predictions = predict(model, dataset, device=device, batch_size=batch_size, workers=workers)
    metrics = coco_map(dataset.coco, to_coco_results(predictions, dataset.cat_of_class))
    return metrics, predictions


@torch.no_grad()
def predict_scan_level(
    model: torch.nn.Module,
    dataset: XrayDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scan-level scores of a box-free model over a split, with the split's image labels.

    Returns:
        (scores (N, K), labels (N, K): 1/0, -1 where unknown), in dataset order.
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    scores, labels = [], []
    for images, _, image_labels in loader:
        scores += [o["image_scores"].float().cpu().numpy() for o in model(images.to(device))]
        labels.append(image_labels.numpy())
    return np.stack(scores), np.concatenate(labels)


def scan_level_metrics(
    scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, thresh: float = 0.5
) -> dict[str, Any]:
    """Per-category average precision and balanced accuracy (at `thresh`) of scan-level scores.

    A category enters the means only where the split has both scans with and without it.
    `top1` is the share of labelled scans whose highest-scoring category is one of theirs.
    """
    from sklearn.metrics import average_precision_score, balanced_accuracy_score

    per_class: dict[str, Any] = {}
    aps, baccs = [], []
    for k, name in enumerate(classes):
        known = labels[:, k] >= 0
        y, s = labels[known, k] > 0.5, scores[known, k]
        m: dict[str, Any] = {
            "positives": int(y.sum()),
            "scans": int(known.sum()),
            "AP": None,
            "balanced_accuracy": None,
        }
        if 0 < y.sum() < len(y):
            m["AP"] = float(average_precision_score(y, s))
            m["balanced_accuracy"] = float(balanced_accuracy_score(y, s >= thresh))
            aps.append(m["AP"])
            baccs.append(m["balanced_accuracy"])
        per_class[name] = m
    has = (labels > 0.5).any(axis=1)
    top = scores.argmax(axis=1)
    top1 = float((labels[np.arange(len(labels)), top] > 0.5)[has].mean()) if has.any() else None
    return {
        "level": "scan",
        "scans": int(len(scores)),
        "scan_mAP": float(np.mean(aps)) if aps else None,
        "balanced_accuracy": float(np.mean(baccs)) if baccs else None,
        "top1": top1,
        "thresh": thresh,
        "per_class": per_class,
    }


def evaluate_scan_level(
    model: torch.nn.Module,
    dataset: XrayDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int = 0,
) -> dict[str, Any]:
    """Scan-level metrics (`scan_level_metrics`) of a box-free model against the split's image labels
    (the dataset's `image_labels` source: declared categories, or the boxed truth)."""
    scores, labels = predict_scan_level(model, dataset, device=device, batch_size=batch_size, workers=workers)
    return scan_level_metrics(scores, labels, dataset.classes)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray evaluate", description="COCO mAP of a trained detector on a dataset split.")
    p.add_argument("--model", required=True, help="training checkpoint (best.pt / last.pt)")
    p.add_argument("--data", required=True, help="dataset folder in the xray format")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    # Box level only here; `xray evaluate --level scan` (verdicts on declarations) is routed elsewhere by the CLI.
    p.add_argument("--level", choices=["box"], default="box", help="what is scored: detected boxes (COCO mAP)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=None, help="folder for metrics.json and plots (default: print only)")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """The `xray evaluate` command; prints per-class AP and returns an exit code."""
    args = get_args_parser().parse_args(argv)
    try:
        model, ckpt = model_from_checkpoint(args.model)
        spec = config_from_dict(ckpt["config"]).input
        dataset = XrayDataset(args.data, args.split, spec=spec, classes=ckpt["classes"], image_labels="none")
        model.to(args.device)
        metrics, predictions = evaluate(
            model, dataset, device=args.device, batch_size=args.batch_size, workers=args.workers
        )
    except XrayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def fmt(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"

    print(f"{args.data} [{args.split}]: {len(dataset)} scans")
    print(f"{'class':<16} {'gt':>5} {'AP50':>6} {'AP':>6}")
    for name, m in metrics["per_class"].items():
        if m["gt"]:
            print(f"{name:<16} {m['gt']:>5} {fmt(m['AP50']):>6} {fmt(m['AP']):>6}")
    print(f"{'all':<16} {'':>5} {fmt(metrics['mAP50']):>6} {fmt(metrics['mAP']):>6}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "model": str(args.model),
            "data": str(args.data),
            "split": args.split,
            "scans": len(dataset),
            **public_metrics(metrics),
        }
        (out / "metrics.json").write_text(json.dumps(report, indent=2))
        plots.plot_all(out, dataset=dataset, predictions=predictions, metrics=metrics)
        print(f"wrote {out / 'metrics.json'} and plots")
    return 0
