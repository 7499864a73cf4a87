"""A torch Dataset over a folder in the xray dataset format (datasets/FORMAT.md).

COCO boxes through pycocotools, scan files through `xray.sources.files`, one manifest
per scan. Classes are mapped by category *name* to the model's class list (the order
of xray/goods.yaml by default), so a user's dataset with other category ids works.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from xray.data.augment import Augment, extract_patch, project, rescale_patch
from xray.errors import DatasetError, ManifestError, ScanError, ScanReadError
from xray.goods import default_goods_table
from xray.manifest import Manifest
from xray.model.preprocess import InputSpec, base_channels, finish, fit, shrink
from xray.scan import Scan
from xray.sources.files import ScanFile, decode_scan

IMAGE_LABEL_SOURCES = ("boxes", "manifest", "none")


def read_scan(root: str | Path, entry: dict[str, Any]) -> Scan:
    """Read the scan of one COCO image entry of a dataset in the xray format.

    The files go through the same reader as scans sent for inspection
    (`xray.sources.files`), so training and inference see the same pixels.
    """
    images = Path(root) / "images"
    high = images / entry["file_name"]
    low_name = entry.get("low_file_name")
    try:
        scan = decode_scan(
            ScanFile.load(high),
            ScanFile.load(images / low_name) if low_name else None,
            scan_id=str(entry.get("scan_id") or Path(entry["file_name"]).stem),
            pixel_mm=tuple(entry.get("pixel_mm") or (5.0, 5.0)),
            energies=tuple(entry.get("energies") or ()) or None,
        )
    except ScanReadError as e:
        raise DatasetError(str(e)) from e
    scan.meta.update(file_name=entry["file_name"], low_file_name=low_name)
    return scan


class XrayDataset(Dataset):
    """One split of a dataset in the xray format, as model inputs and targets.

    Each item is `(image, target, image_labels)`:
      image: float32 tensor (C, H, W), the output of the shared preprocessing;
      target: `boxes` (N, 4) xyxy in model-input pixels, `labels` (N,) class indices,
        `image_id` (COCO id), `scale` (sx, sy) = input pixels per scan pixel;
      image_labels: float32 (K,) 1/0 per class, -1 where unknown.

    Args:
        root: The dataset folder.
        split: `train`, `val`, `test` (any split with `annotations/<split>.json`).
        spec: The model's input spec.
        classes: Class keys in model order (default: the goods table).
        augment: Training augmentation, or None.
        image_labels: Where image-level labels come from: `boxes` (the goods boxed in
            the scan), `manifest` (the declared goods, what archives have), `none`.
        seed: Base seed of the per-item augmentation randomness.

    Raises:
        DatasetError: for a folder that does not follow the format.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        spec: InputSpec,
        classes: Sequence[str] | None = None,
        augment: Augment | None = None,
        image_labels: str = "boxes",
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.spec = spec
        self.classes = list(classes) if classes is not None else default_goods_table().keys
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        if image_labels not in IMAGE_LABEL_SOURCES:
            raise DatasetError(f"image_labels must be one of {IMAGE_LABEL_SOURCES}, got {image_labels!r}")
        self.image_label_source = image_labels
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        ann_path = self.root / "annotations" / f"{split}.json"
        if not ann_path.is_file():
            have = sorted(p.stem for p in (self.root / "annotations").glob("*.json"))
            raise DatasetError(f"{ann_path}: no annotations for split {split!r} (splits here: {have or 'none'})")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                self.coco = COCO(str(ann_path))
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError, AttributeError) as e:
            raise DatasetError(f"{ann_path}: not a COCO detection file: {e!r}") from e
        self._index(ann_path)
        self.tip_pool = self._tip_pool()

    def _index(self, ann_path: Path) -> None:
        class_of_name = {k: i for i, k in enumerate(self.classes)}
        self.class_of_cat: dict[int, int] = {}
        for cat in self.coco.loadCats(self.coco.getCatIds()):
            if cat.get("name") not in class_of_name:
                raise DatasetError(
                    f"{ann_path}: category {cat.get('name')!r} (id {cat.get('id')}) is not a model class; "
                    f"classes: {', '.join(self.classes)}"
                )
            self.class_of_cat[cat["id"]] = class_of_name[cat["name"]]
        self.cat_of_class = {c: cat for cat, c in self.class_of_cat.items()}
        self.ids = sorted(self.coco.getImgIds())
        if not self.ids:
            raise DatasetError(f"{ann_path}: no images")
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        for img_id in self.ids:
            entry = self.coco.imgs[img_id]
            for key in ("file_name", "width", "height"):
                if key not in entry:
                    raise DatasetError(f"{ann_path}: image {img_id} lacks {key!r}")
            boxes, labels = [], []
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[img_id], iscrowd=None)):
                bbox = ann.get("bbox")
                if not (isinstance(bbox, list) and len(bbox) == 4) or bbox[2] < 0 or bbox[3] < 0:
                    raise DatasetError(f"{ann_path}: annotation {ann.get('id')} has a bad bbox {bbox!r}")
                if ann.get("category_id") not in self.class_of_cat:
                    raise DatasetError(f"{ann_path}: annotation {ann.get('id')} has unknown category {ann.get('category_id')}")
                x, y, w, h = bbox
                box = np.clip([x, y, x + w, y + h], 0, [entry["width"], entry["height"]] * 2)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:  # nothing left after clipping: skip
                    boxes.append(box)
                    labels.append(self.class_of_cat[ann["category_id"]])
            self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
            self.labels.append(np.asarray(labels, np.int64))
        first = self.coco.imgs[self.ids[0]]
        if self.spec.mode in ("dual", "dual_ratio") and not first.get("low_file_name"):
            raise DatasetError(f"{ann_path}: the model takes dual energy ({self.spec.mode}), the dataset is single-energy")
        self.manifest_labels = [self._manifest_labels(self.coco.imgs[i]) for i in self.ids] if (
            self.image_label_source == "manifest"
        ) else None

    def _manifest_labels(self, entry: dict[str, Any]) -> np.ndarray:
        scan_id = entry.get("scan_id") or Path(entry["file_name"]).stem.removesuffix("_high")
        path = self.root / "manifests" / f"{scan_id}.json"
        try:
            declared, _ = Manifest.load(path).categories()
        except ManifestError as e:
            raise DatasetError(str(e)) from e
        out = np.zeros(len(self.classes), np.float32)
        for c in declared:
            if c in self.classes:
                out[self.classes.index(c)] = 1.0
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Make the augmentation of the next pass differ from the last (and stay reproducible)."""
        self.epoch = epoch

    def entry(self, index: int) -> dict[str, Any]:
        return self.coco.imgs[self.ids[index]]

    def scan(self, index: int) -> Scan:
        return read_scan(self.root, self.entry(index))

    def _tip_pool(self) -> list[tuple[int, int]]:
        """(image index, box index) of every box that TIP may cut as a patch."""
        if self.augment is None:
            return []
        allowed = self.augment.cfg["tip_categories"]
        ok = set(range(len(self.classes))) if allowed is None else {self.classes.index(c) for c in allowed if c in self.classes}
        return [(i, j) for i, labels in enumerate(self.labels) for j, lab in enumerate(labels) if lab in ok]

    def _tip_patch(self, rng: np.random.Generator, scan: Scan) -> tuple[np.ndarray, int] | None:
        """A goods patch from a scan of the split (background removed), at `scan`'s pixel spacing."""
        if not self.tip_pool:
            return None
        i, j = self.tip_pool[rng.integers(len(self.tip_pool))]
        donor = self.scan(i)
        patch = extract_patch(base_channels(donor, self.spec), self.boxes[i][j])
        if tuple(donor.pixel_mm) != tuple(scan.pixel_mm):
            patch = rescale_patch(patch, donor.pixel_mm, scan.pixel_mm)
        return patch, int(self.labels[i][j])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        scan = self.scan(index)
        try:
            base = base_channels(scan, self.spec)
        except ScanError as e:
            raise DatasetError(f"{self.root}: {e}") from e
        boxes, labels = self.boxes[index], self.labels[index]
        image_labels = self.manifest_labels[index].copy() if self.manifest_labels is not None else None

        rng = np.random.default_rng([self.seed, self.epoch, index])
        augment = self.augment is not None and self.spec.physical
        if augment and rng.random() < self.augment.cfg["tip"]:
            for _ in range(int(rng.integers(1, self.augment.cfg["tip_max"] + 1))):
                got = self._tip_patch(rng, scan)
                if got is None:
                    break
                base, boxes, labels = project(
                    base, boxes, labels, got[0], got[1], rng=rng, over_goods=self.augment.cfg["tip_over_goods"]
                )
                if image_labels is not None:
                    image_labels[got[1]] = 1.0

        lb = fit(base.shape[1:], self.spec.size)
        base = shrink(base, lb.resized_hw, self.spec)
        boxes = lb.to_input(boxes)
        if augment:
            base, boxes, labels = self.augment(base, boxes, labels, rng=rng, geometric_only=self.spec.detail_channels)
        image = finish(base, self.spec)

        if self.image_label_source == "boxes":
            image_labels = np.zeros(len(self.classes), np.float32)
            image_labels[labels] = 1.0
        elif image_labels is None:
            image_labels = np.full(len(self.classes), -1.0, np.float32)
        target = {
            "boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(np.asarray(labels, np.int64)),
            "image_id": torch.tensor(self.ids[index]),
            "scale": torch.tensor([lb.sx, lb.sy], dtype=torch.float32),
        }
        return torch.from_numpy(image), target, torch.from_numpy(image_labels)


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]):
    """Stack images and image labels; keep per-image targets as a list."""
    images, targets, image_labels = zip(*batch)
    return torch.stack(images), list(targets), torch.stack(image_labels)
