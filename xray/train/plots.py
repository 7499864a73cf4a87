"""Training plots as PNG: loss curves, per-class PR curves, confusion matrix, predictions."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt
import numpy as np

from xray.data.dataset import XrayDataset
from xray.train.metrics import confusion_matrix


def plot_losses(metrics_csv: str | Path, out: str | Path) -> Path:
    """Training losses per epoch and validation mAP from metrics.csv."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for key in rows[0] if rows else []:
        if key.startswith("loss"):
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax1.set(xlabel="epoch", ylabel="loss", title="training losses", yscale="log")
    ax1.legend()
    for key in ("val_mAP50", "val_mAP", "val_scan_mAP", "val_balanced_accuracy"):
        vals = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in (None, "")]
        if vals:
            ax2.plot(*zip(*vals), marker="o", label=key)
    ax2.set(xlabel="epoch", ylabel="mAP", title="validation", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_pr_curves(metrics: dict[str, Any], names: dict[int, str], out: str | Path) -> Path:
    """Precision-recall per class at IoU 0.5, from COCOeval's precision array."""
    precision = metrics["precision"]  # (T, R, K, A, M)
    recall = np.linspace(0, 1, precision.shape[1])
    fig, ax = plt.subplots(figsize=(7, 6))
    for k, cat_id in enumerate(metrics["category_ids"]):
        p = precision[0, :, k, 0, -1]
        if (p > -1).any():
            ap = metrics["per_class"][names[cat_id]]["AP50"]
            ax.plot(recall, np.clip(p, 0, None), label=f"{names[cat_id]} {ap:.2f}")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"PR at IoU 0.5 (mAP50 {metrics['mAP50'] or 0:.3f})",
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_confusion(cm: np.ndarray, classes: list[str], out: str | Path) -> Path:
    """Confusion matrix (rows true, columns predicted, last = background), row-normalised colours."""
    names = list(classes) + ["background"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (IoU 0.5)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_predictions(
    dataset: XrayDataset, predictions: list[dict[str, Any]], out: str | Path, *, n: int = 6, score_thresh: float = 0.3
) -> Path:
    """A column of val scans (high-energy transmission) with true boxes (green) and predictions (red)."""
    n = min(n, len(dataset))
    by_id = {p["image_id"]: p for p in predictions}
    fig, axes = plt.subplots(n, 1, figsize=(14, 2.6 * n), squeeze=False)
    for ax, idx in zip(axes[:, 0], range(n)):
        scan = dataset.scan(idx)
        ax.imshow(scan.channels[0], cmap="gray", vmin=0, vmax=1)
        for box, lab in zip(dataset.boxes[idx], dataset.labels[idx]):
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="lime", lw=1.5))
            ax.text(box[0], box[3], dataset.classes[lab], color="lime", fontsize=7, va="top")
        p = by_id.get(dataset.ids[idx])
        if p is not None:
            for box, score, lab in zip(p["boxes"], p["scores"], p["labels"]):
                if score >= score_thresh:
                    ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="red", lw=1))
                    ax.text(box[0], box[1], f"{dataset.classes[lab]} {score:.2f}", color="red", fontsize=7)
        ax.set_title(scan.id, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)


def plot_all(
    out_dir: str | Path, *, dataset: XrayDataset, predictions: list[dict[str, Any]], metrics: dict[str, Any]
) -> list[Path]:
    """PR curves, confusion matrix and prediction grid of one evaluation (loss curves: `plot_losses`)."""
    out_dir = Path(out_dir)
    names = {c["id"]: c["name"] for c in dataset.coco.dataset["categories"]}
    return [
        plot_pr_curves(metrics, names, out_dir / "pr_curves.png"),
        plot_confusion(confusion_matrix(dataset, predictions), dataset.classes, out_dir / "confusion_matrix.png"),
        plot_predictions(dataset, predictions, out_dir / "val_predictions.png"),
    ]
