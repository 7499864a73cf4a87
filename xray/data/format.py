"""The one reader of the xray dataset layout (datasets/FORMAT.md).

    DATASET/dataset.json, images/<split>/..., annotations/<split>.json (COCO),
    manifests/<scan_id>.json, truth.jsonl (optional)

`split_records` lists a split as typed `ScanRecord`s (files, pixel spacing, manifest, truth,
COCO boxes); `ScanRecord.read` reads its scan through `xray.sources.files`, the same reader
as scans sent for inspection, so training, calibration and inference see the same pixels.
Everything that does not follow the layout is a `DatasetError` naming the file and what is wrong.
Torch-free: the CLI, the calibration and the benchmarks use it without loading torch.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xray.errors import DatasetError, ManifestError, ScanReadError
from xray.manifest import Manifest
from xray.scan import DEFAULT_PIXEL_MM, Scan
from xray.sources.files import ScanFile, decode_scan

FORMAT_NAME = "xray-dataset"
TRUTH_FILE = "truth.jsonl"
DESCRIPTION_FILE = "dataset.json"


@dataclass(frozen=True)
class Box:
    """One COCO annotation: category name and `[x, y, w, h]` in scan pixels."""

    category: str
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class ScanRecord:
    """One scan of a dataset split, as the layout describes it (nothing decoded yet)."""

    scan_id: str
    split: str
    high: Path
    low: Path | None
    pixel_mm: tuple[float, float]
    energies: tuple[str, ...]
    manifest_path: Path
    image_id: int | None = None
    width: int | None = None
    height: int | None = None
    truth: dict[str, Any] | None = None
    boxes: tuple[Box, ...] = ()
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_entry(cls, root: str | Path, split: str, entry: dict[str, Any], *, boxes: tuple[Box, ...] = (),
                   truth: dict[str, Any] | None = None, source: str | Path | None = None) -> ScanRecord:
        """The record of one COCO image entry; `source` (the annotations file) names it in errors.

        Raises:
            DatasetError: the entry lacks `file_name` or has a malformed `pixel_mm`.
        """
        root = Path(root)
        where = source or annotations_path(root, split)
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{where}: image {entry.get('id')!r} has no file_name")
        scan_id = str(entry.get("scan_id") or Path(file_name).stem.removesuffix("_high"))
        low_name = entry.get("low_file_name")
        spacing = entry.get("pixel_mm") or DEFAULT_PIXEL_MM
        try:
            row_mm, col_mm = (float(v) for v in spacing)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{where}: image {scan_id!r} has pixel_mm {spacing!r}; expected [row_mm, col_mm]") from e
        images = root / "images"
        return cls(
            scan_id=scan_id,
            split=split,
            high=images / file_name,
            low=images / low_name if low_name else None,
            pixel_mm=(row_mm, col_mm),
            energies=tuple(str(e) for e in entry.get("energies") or ()),
            manifest_path=root / "manifests" / f"{scan_id}.json",
            image_id=entry.get("id"),
            width=entry.get("width"),
            height=entry.get("height"),
            truth=truth,
            boxes=boxes,
            entry=entry,
        )

    def read(self) -> Scan:
        """The scan, through the inspection reader; `meta` also names the dataset files.

        Raises:
            DatasetError: a file is missing or unreadable (the message names it).
        """
        try:
            scan = decode_scan(
                ScanFile.load(self.high),
                ScanFile.load(self.low) if self.low else None,
                scan_id=self.scan_id,
                pixel_mm=self.pixel_mm,
                energies=self.energies or None,
            )
        except ScanReadError as e:
            raise DatasetError(str(e)) from e
        scan.meta.update(file_name=self.entry.get("file_name"), low_file_name=self.entry.get("low_file_name"))
        return scan

    def manifest(self) -> Manifest:
        """The declared manifest of the scan.

        Raises:
            DatasetError: missing or invalid manifest file.
        """
        try:
            return Manifest.load(self.manifest_path)
        except ManifestError as e:
            raise DatasetError(str(e)) from e


def goods_table_name(root: str | Path) -> str | None:
    """The goods table a dataset names in its dataset.json (`"parcel"`, a path), or None: the cargo table.

    Raises:
        DatasetError: an unreadable dataset.json.
    """
    path = Path(root) / DESCRIPTION_FILE
    if not path.is_file():
        return None
    try:
        name = json.loads(path.read_text()).get("goods_table")
    except (OSError, ValueError, AttributeError) as e:
        raise DatasetError(f"{path}: unreadable dataset description: {e}") from e
    return str(name) if name else None


def annotations_path(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"{split}.json"


def splits(root: str | Path) -> list[str]:
    """The splits that have annotations, sorted."""
    return sorted(p.stem for p in (Path(root) / "annotations").glob("*.json"))


def has_split(root: str | Path, split: str, *, truth: bool = False) -> bool:
    """Whether `root` has annotations for `split` (and a truth.jsonl, with `truth`)."""
    root = Path(root)
    return annotations_path(root, split).is_file() and (not truth or (root / TRUTH_FILE).is_file())


def load_coco(root: str | Path, split: str) -> dict[str, Any]:
    """The COCO JSON of a split, checked for its three lists.

    Raises:
        DatasetError: no such folder or split, or not COCO detection JSON.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    path = annotations_path(root, split)
    if not path.is_file():
        raise DatasetError(f"{path}: no annotations for split {split!r} (splits here: {splits(root) or 'none'})")
    try:
        coco = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a COCO detection file (not readable JSON: {e})") from e
    if not isinstance(coco, dict):
        raise DatasetError(f"{path}: not a COCO detection file (top level is {type(coco).__name__}, not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DatasetError(f"{path}: not a COCO detection file: no {key!r} list")
    return coco


def read_truth(root: str | Path, split: str | None = None) -> dict[str, dict[str, Any]]:
    """truth.jsonl by scan id (only `split`'s lines when given).

    Raises:
        DatasetError: no truth.jsonl, or a line that is not a JSON object with a scan_id (line number given).
    """
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: not found; scan-level truth is needed here (see datasets/FORMAT.md)")
    truth: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not JSON: {e}") from e
        if not isinstance(item, dict) or not item.get("scan_id"):
            raise DatasetError(f"{path}:{n}: expected an object with a scan_id")
        if split is None or item.get("split") == split:
            truth[str(item["scan_id"])] = item
    return truth


def split_records(root: str | Path, split: str, *, truth: bool = False, coco: dict[str, Any] | None = None
                  ) -> list[ScanRecord]:
    """The scans of a split, in annotation order, each with its COCO boxes (and its truth).

    Args:
        truth: Require a truth.jsonl line for every scan (calibration, verdict evaluation);
            without it, truth is attached where present.
        coco: The split's COCO JSON when the caller has already loaded it (`load_coco`).

    Raises:
        DatasetError: the folder does not follow the layout; the message names the file.
    """
    root = Path(root)
    if truth and not (root / TRUTH_FILE).is_file():
        raise DatasetError(f"{root}: needs annotations/{split}.json and {TRUTH_FILE} (see datasets/FORMAT.md)")
    coco = coco if coco is not None else load_coco(root, split)
    source = annotations_path(root, split)
    truths = read_truth(root, split) if (root / TRUTH_FILE).is_file() else {}
    names = {c.get("id"): c.get("name") for c in coco["categories"] if isinstance(c, dict)}
    boxes: dict[Any, list[Box]] = {}
    for ann in coco["annotations"]:
        if not isinstance(ann, dict):
            raise DatasetError(f"{source}: an annotation is not an object: {ann!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4) or bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f"{source}: annotation {ann.get('id')} has a bad bbox {bbox!r}")
        if ann.get("category_id") not in names:
            raise DatasetError(f"{source}: annotation {ann.get('id')} has unknown category {ann.get('category_id')}")
        box = Box(str(names[ann["category_id"]]), (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])))
        boxes.setdefault(ann.get("image_id"), []).append(box)
    records = []
    for entry in coco["images"]:
        if not isinstance(entry, dict):
            raise DatasetError(f"{source}: an image entry is not an object: {entry!r}")
        record = ScanRecord.from_entry(root, split, entry, boxes=tuple(boxes.get(entry.get("id"), ())), source=source)
        if truth and record.scan_id not in truths:
            raise DatasetError(f"{root}: scan {record.scan_id!r} of split {split!r} has no line in {TRUTH_FILE}")
        records.append(replace(record, truth=truths[record.scan_id]) if record.scan_id in truths else record)
    if truth and not records:
        raise DatasetError(f"{source}: split {split!r} has no scans")
    return records


def check_dataset(root: str | Path) -> dict[str, Any]:
    """Validate a dataset folder: every split's records, files and manifests; counts per split and category.

    Raises:
        DatasetError: the first thing that does not follow the layout, naming its file.
    """
    root = Path(root)
    found = splits(root) if root.is_dir() else []
    if not found:
        raise DatasetError(f"{root}: no annotations/<split>.json (not an xray dataset; see datasets/FORMAT.md)")
    report: dict[str, Any] = {"dataset": str(root), "splits": {}}
    for split in found:
        records = split_records(root, split)
        for r in records:
            for path in (r.high, r.low):
                if path is not None and not path.is_file():
                    raise DatasetError(f"{path}: missing (scan {r.scan_id!r} of split {split!r})")
            r.manifest()
        categories = Counter(b.category for r in records for b in r.boxes)
        report["splits"][split] = {
            "scans": len(records),
            "dual_energy": sum(r.low is not None for r in records),
            "with_truth": sum(r.truth is not None for r in records),
            "boxes": sum(categories.values()),
            "boxes_per_category": dict(sorted(categories.items())),
        }
    return report
