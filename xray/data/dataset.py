"""A torch Dataset over a folder in the xray dataset format (datasets/FORMAT.md).

The layout is read by `xray.data.format` (the one reader); pycocotools indexes the same
COCO JSON for mAP. Classes are mapped by category *name* to the model's class list (the order
of xray/goods.yaml by default), so a user's dataset with other category ids works.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from tqdm import tqdm

from xray.data.augment import Augment, extract_patch, project, rescale_patch
from xray.data.format import ScanRecord, annotations_path, load_coco, split_records
from xray.domain import scan_group
from xray.errors import DatasetError, ScanError
from xray.goods import default_goods_table
from xray.model.preprocess import InputSpec, base_channels, finish, fit, shrink
from xray.scan import Scan

IMAGE_LABEL_SOURCES = ("boxes", "manifest", "none")
# Bytes of TIP patches a training run keeps (`XrayDataset.keep_tip_patches`). Cutting a patch decodes
# its donor scan: about 30 % of a training item's CPU when it is done on every draw.
TIP_CACHE_BYTES = 2 << 30


def read_scan(root: str | Path, entry: dict[str, Any]) -> Scan:
    """Read the scan of one COCO image entry of a dataset in the xray format (see `ScanRecord.read`)."""
    return ScanRecord.from_entry(root, "", entry, source=root).read()


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
        coco = load_coco(self.root, split)  # DatasetError for a missing folder, split or malformed JSON
        self.records = sorted(split_records(self.root, split, coco=coco), key=lambda r: r.image_id or 0)
        self.coco = COCO()  # pycocotools' index over the same JSON, for mAP
        self.coco.dataset = coco
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                self.coco.createIndex()
        except (KeyError, TypeError) as e:
            raise DatasetError(f"{annotations_path(self.root, split)}: not a COCO detection file: {e!r}") from e
        self._index(annotations_path(self.root, split))
        self.tip_pool = self._tip_pool()
        # (image index, box index) -> (patch, donor pixel_mm), filled by `keep_tip_patches`.
        self.tip_patches: dict[tuple[int, int], tuple[np.ndarray, tuple[float, float]]] = {}

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
        if not self.records:
            raise DatasetError(f"{ann_path}: no images")
        self.ids = [int(r.image_id) if r.image_id is not None else -1 for r in self.records]
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        for r in self.records:
            if r.image_id is None or r.width is None or r.height is None:
                missing = [k for k in ("id", "width", "height") if r.entry.get(k) is None]
                raise DatasetError(f"{ann_path}: image {r.scan_id!r} lacks {missing[0]!r}")
            boxes, labels = [], []
            for b in r.boxes:
                x, y, w, h = b.bbox
                box = np.clip([x, y, x + w, y + h], 0, [r.width, r.height] * 2)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:  # nothing left after clipping: skip
                    boxes.append(box)
                    labels.append(class_of_name[b.category])
            self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
            self.labels.append(np.asarray(labels, np.int64))
        # A mixed-profile dataset holds single-energy scans too; they get the engine's synthetic
        # low energy (preprocess.base_channels). Only a dataset with no dual-energy scan at all is refused.
        if self.spec.mode in ("dual", "dual_ratio") and all(r.low is None for r in self.records):
            raise DatasetError(f"{ann_path}: the model takes dual energy ({self.spec.mode}), the dataset is single-energy")
        self.manifest_labels = [self._manifest_labels(r) for r in self.records] if (
            self.image_label_source == "manifest"
        ) else None

    def _manifest_labels(self, record: ScanRecord) -> np.ndarray:
        declared, _ = record.manifest().categories()
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
        return self.records[index].entry

    def scan(self, index: int) -> Scan:
        return self.records[index].read()

    def _tip_pool(self) -> list[tuple[int, int]]:
        """(image index, box index) of every box that TIP may cut as a patch (none where TIP never runs)."""
        if self.augment is None or self.augment.cfg["tip"] <= 0 or not self.spec.physical:
            return []
        allowed = self.augment.cfg["tip_categories"]
        ok = set(range(len(self.classes))) if allowed is None else {self.classes.index(c) for c in allowed if c in self.classes}
        return [(i, j) for i, labels in enumerate(self.labels) for j, lab in enumerate(labels) if lab in ok]

    def _cut(self, i: int, js: Sequence[int]) -> list[tuple[np.ndarray, tuple[float, float]]]:
        """The patches of boxes `js` of image `i`, each with the donor scan's pixel spacing."""
        donor = self.scan(i)
        try:
            base = base_channels(donor, self.spec)
        except ScanError as e:
            raise DatasetError(f"{self.root}: {e}") from e
        pixel_mm = (float(donor.pixel_mm[0]), float(donor.pixel_mm[1]))
        return [(extract_patch(base, self.boxes[i][j]), pixel_mm) for j in js]

    def keep_tip_patches(self, budget: int = TIP_CACHE_BYTES, *, progress: bool = False) -> int:
        """Cut every TIP patch once and keep it (up to `budget` bytes; the rest are cut on each draw).
        Called before the loader's workers start, which share the patches with this process. The
        augmentation is unchanged: a kept patch is the one a draw would cut. Returns the patches kept."""
        by_donor: dict[int, list[int]] = {}
        for i, j in self.tip_pool:
            by_donor.setdefault(i, []).append(j)
        kept = sum(p.nbytes for p, _ in self.tip_patches.values())
        for i, js in tqdm(by_donor.items(), desc="TIP patches", disable=not progress, leave=False, dynamic_ncols=True):
            if kept >= budget:
                break
            if all((i, j) in self.tip_patches for j in js):
                continue
            for j, got in zip(js, self._cut(i, js), strict=True):
                self.tip_patches[(i, j)] = got
                kept += got[0].nbytes
        return len(self.tip_patches)

    def _tip_patch(self, rng: np.random.Generator, scan: Scan) -> tuple[np.ndarray, int] | None:
        """A goods patch from a scan of the split (background removed), at `scan`'s pixel spacing."""
        if not self.tip_pool:
            return None
        i, j = self.tip_pool[rng.integers(len(self.tip_pool))]
        got = self.tip_patches.get((i, j))
        patch, pixel_mm = got if got is not None else self._cut(i, [j])[0]
        if pixel_mm != tuple(scan.pixel_mm):
            patch = rescale_patch(patch, pixel_mm, scan.pixel_mm)
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
        augment = self.augment if self.spec.physical else None
        if augment is not None and rng.random() < augment.cfg["tip"]:
            for _ in range(int(rng.integers(1, augment.cfg["tip_max"] + 1))):
                got = self._tip_patch(rng, scan)
                if got is None:
                    break
                base, boxes, labels = project(
                    base, boxes, labels, got[0], got[1], rng=rng, over_goods=augment.cfg["tip_over_goods"]
                )
                if image_labels is not None:
                    image_labels[got[1]] = 1.0

        lb = fit(base.shape[1:], self.spec.size)
        scan_format = scan_group(scan)
        if augment is not None and augment.at_scan_resolution:  # before the detail channels are measured
            base = augment.scanner(base, rng=rng, px_per_input=1.0 / lb.sy, scan_format=scan_format)
        base = shrink(base, lb.resized_hw, self.spec)
        boxes = lb.to_input(boxes)
        if augment is not None:
            base, boxes, labels = augment(base, boxes, labels, rng=rng, geometric_only=self.spec.detail_channels,
                                          scan_format=scan_format)
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
