"""COCO evaluation of a detector on a dataset split (pycocotools' COCOeval; no own mAP).

`evaluate_main(argv)` is the `xray evaluate` command:
    xray evaluate --model runs/NAME/best.pt --data DATASET [--split test] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from xray.data.dataset import XrayDataset, collate
from xray.detection import box_iou
from xray.errors import XrayError


@torch.no_grad()
def predict(
    model: torch.nn.Module, dataset: XrayDataset, *, device: torch.device | str = "cpu", batch_size: int = 4,
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
    for images, targets, _ in loader:
        for det, tgt in zip(model(images.to(device)), targets):
            sx, sy = tgt["scale"].tolist()
            boxes = det["boxes"].float().cpu().numpy() / np.array([sx, sy, sx, sy], np.float32)
            entry = dataset.coco.imgs[int(tgt["image_id"])]
            boxes = np.clip(boxes, 0, [entry["width"], entry["height"]] * 2)
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


def to_coco_results(predictions: list[dict[str, Any]], cat_of_class: dict[int, int]) -> list[dict[str, Any]]:
    """Per-image predictions -> COCO result dicts ([x, y, w, h] boxes, dataset category ids)."""
    results = []
    for p in predictions:
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"]):
            if int(label) not in cat_of_class:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({
                "image_id": p["image_id"], "category_id": cat_of_class[int(label)],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score),
            })
    return results


def coco_map(coco_gt: COCO, results: list[dict[str, Any]]) -> dict[str, Any]:
    """mAP@0.5 and mAP@0.5:0.95, overall and per category, by pycocotools' COCOeval.

    Returns:
        `mAP50`, `mAP` (None when the split has no boxes), `per_class` {category name:
        {"AP50", "AP", "gt"}} (AP None for categories without ground truth), and
        `precision`, COCOeval's (T, R, K, A, M) array, for PR curves.
    """
    # Build the detections' COCO object directly: loadRes fails on an empty list, and
    # "no detections" must score 0, not crash.
    coco_dt = COCO()
    anns = []
    for i, r in enumerate(results):
        w, h = r["bbox"][2:]
        anns.append({**r, "id": i + 1, "area": w * h, "iscrowd": 0})
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                       "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and tables
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # (T IoUs, R recall points, K categories, A areas, M maxDets)
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p_all = precision[:, :, k, 0, -1]
        p_50 = precision[0, :, k, 0, -1]
        n_gt = len(coco_gt.getAnnIds(catIds=[cat_id], iscrowd=False))
        per_class[coco_gt.cats[cat_id]["name"]] = {
            "AP50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else None,
            "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "gt": n_gt,
        }
    stat = lambda v: None if v < 0 else float(v)
    return {
        "mAP": stat(ev.stats[0]),
        "mAP50": stat(ev.stats[1]),
        "per_class": per_class,
        "precision": precision,
        "category_ids": list(ev.params.catIds),
    }


def confusion_matrix(
    dataset: XrayDataset, predictions: list[dict[str, Any]], *, iou: float = 0.5, score_thresh: float = 0.3
) -> np.ndarray:
    """Detection confusion matrix (K+1, K+1): rows true class, columns predicted; last = background.

    Each ground-truth box is matched to the highest-IoU prediction above `score_thresh`
    (IoU >= `iou`, each prediction used once); unmatched boxes count as background.
    """
    k = len(dataset.classes)
    cm = np.zeros((k + 1, k + 1), np.int64)
    by_id = {p["image_id"]: p for p in predictions}
    for idx, img_id in enumerate(dataset.ids):
        gt_boxes, gt_labels = dataset.boxes[idx], dataset.labels[idx]
        p = by_id.get(img_id, {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)})
        keep = p["scores"] >= score_thresh
        pb, pl = p["boxes"][keep], p["labels"][keep]
        used = np.zeros(len(pb), bool)
        ious = box_iou(gt_boxes, pb)
        # Most certain matches first, so that a weaker overlap cannot take a box away.
        order = np.argsort(-ious.max(axis=1)) if len(pb) else range(len(gt_boxes))
        for g in order:
            cand = np.where((ious[g] >= iou) & ~used)[0]
            if len(cand):
                j = cand[np.argmax(ious[g, cand])]
                used[j] = True
                cm[gt_labels[g], pl[j]] += 1
            else:
                cm[gt_labels[g], k] += 1
        for j in np.where(~used)[0]:
            cm[k, pl[j]] += 1
    return cm


def evaluate(
    model: torch.nn.Module, dataset: XrayDataset, *, device: torch.device | str = "cpu", batch_size: int = 4,
    workers: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Predict a split and score it. Returns (metrics, predictions in scan pixels)."""
    predictions = predict(model, dataset, device=device, batch_size=batch_size, workers=workers)
    metrics = coco_map(dataset.coco, to_coco_results(predictions, dataset.cat_of_class))
    return metrics, predictions


def public_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of `coco_map`'s result (no arrays)."""
    return {k: v for k, v in metrics.items() if k in ("mAP", "mAP50", "per_class")}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray evaluate", description="COCO mAP of a trained detector on a dataset split.")
    p.add_argument("--model", required=True, help="training checkpoint (best.pt / last.pt)")
    p.add_argument("--data", required=True, help="dataset folder in the xray format")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=None, help="folder for metrics.json and plots (default: print only)")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """The `xray evaluate` command; prints per-class AP and returns an exit code."""
    args = get_args_parser().parse_args(argv)
    from xray.model.preprocess import InputSpec
    from xray.model.registry import model_from_checkpoint

    try:
        model, ckpt = model_from_checkpoint(args.model)
        spec = InputSpec.from_dict(ckpt["config"]["input"])
        dataset = XrayDataset(args.data, args.split, spec=spec, classes=ckpt["classes"], image_labels="none")
        model.to(args.device)
        metrics, predictions = evaluate(model, dataset, device=args.device, batch_size=args.batch_size,
                                        workers=args.workers)
    except XrayError as e:
        print(f"error: {e}")
        return 2
    fmt = lambda v: "  -  " if v is None else f"{v:.3f}"
    print(f"{args.data} [{args.split}]: {len(dataset)} scans")
    print(f"{'class':<16} {'gt':>5} {'AP50':>6} {'AP':>6}")
    for name, m in metrics["per_class"].items():
        if m["gt"]:
            print(f"{name:<16} {m['gt']:>5} {fmt(m['AP50']):>6} {fmt(m['AP']):>6}")
    print(f"{'all':<16} {'':>5} {fmt(metrics['mAP50']):>6} {fmt(metrics['mAP']):>6}")
    if args.out:
        from xray.train import plots

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"model": str(args.model), "data": str(args.data), "split": args.split, "scans": len(dataset),
                  **public_metrics(metrics)}
        (out / "metrics.json").write_text(json.dumps(report, indent=2))
        plots.plot_all(out, dataset=dataset, predictions=predictions, metrics=metrics)
        print(f"wrote {out / 'metrics.json'} and plots")
    return 0
