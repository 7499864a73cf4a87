"""Detection metrics of a split: COCO mAP (pycocotools' COCOeval; no own mAP), the
detection confusion matrix, and what data they were measured on.

Shared by evaluation, training (validation mAP) and the plots, which import it; it
imports neither.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from xray.data.dataset import XrayDataset
from xray.detection import box_iou


def to_coco_results(predictions: list[dict[str, Any]], cat_of_class: dict[int, int]) -> list[dict[str, Any]]:
    """Per-image predictions -> COCO result dicts ([x, y, w, h] boxes, dataset category ids)."""
    results = []
    for p in predictions:
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"]):
            if int(label) not in cat_of_class:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": p["image_id"],
                    "category_id": cat_of_class[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
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
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": anns,
    }
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

    def stat(v: float) -> float | None:
        return None if v < 0 else float(v)

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


def public_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of `coco_map`'s result (no arrays)."""
    return {k: v for k, v in metrics.items() if k in ("mAP", "mAP50", "per_class")}


def dataset_info(root: Path) -> dict[str, Any]:
    """What dataset.json says about how a dataset was made (for checkpoints and model cards)."""
    info: dict[str, Any] = {"path": str(root)}
    try:
        meta = json.loads((root / "dataset.json").read_text())
        info.update({k: meta.get(k) for k in ("generator", "params", "splits", "created")})
    except (OSError, json.JSONDecodeError):
        pass
    return info
