"""Writing a folder in the xray dataset layout (datasets/FORMAT.md) from imported scans.

The scan files are copied byte for byte (an 8-bit JPEG export stays that JPEG; the reader
takes it), after each one has been decoded once by the reader the inspection service uses.
`dataset.json` is written last, so a folder without it is an import that did not finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xray
from xray.atomic import write_atomic
from xray.errors import ConfigError, ScanReadError
from xray.manifest import Manifest
from xray.scan import Scan
from xray.sources.files import ScanFile, decode_scan

from .splits import SPLITS

FORMAT_VERSION = 1
# Scan ids become file names: no separators, no leading dot.
SCAN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUFFIX_OF_FORMAT = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm"}
_FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
                     ".dcm": "dicom", ".dicos": "dicom"}


@dataclass(frozen=True)
class Staged:
    """A decoded, accepted scan whose file(s) wait in the staging folder for their split."""

    scan_id: str
    high_name: str
    low_name: str | None
    width: int
    height: int
    pixel_mm: tuple[float, float]
    energies: list[str]


@dataclass(frozen=True)
class Skipped:
    """A source file or table row that was not imported, and why."""

    file: str
    reason: str
    row: int | None = None  # 1-based line of the declarations table (the header is line 1 of a CSV)
    duplicate_of: str | None = None  # scan id of the imported scan with the same bytes


@dataclass
class ImportReport:
    """What an import did: scans per category and split, what was skipped, warnings."""

    out: Path
    source: str
    splits: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # category -> split -> scans
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def imported(self) -> int:
        return sum(self.splits.values())

    def skip(self, file: str | Path, reason: str, *, row: int | None = None, duplicate_of: str | None = None) -> None:
        self.skipped.append(Skipped(str(file), reason, row, duplicate_of))

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "source": self.source, "imported": self.imported, "splits": self.splits,
                "counts": self.counts, "skipped": [asdict(s) for s in self.skipped], "warnings": self.warnings,
                "seconds": round(self.seconds, 2)}

    def summary(self) -> str:
        """A plain-text table: scans per category per split, then each skipped file with why."""
        splits = [s for s in SPLITS if s in self.splits] + sorted(set(self.splits) - set(SPLITS))
        width = max([len("category"), *(len(c) for c in self.counts)])
        lines = [f"{'category':<{width}}  " + "  ".join(f"{s:>6}" for s in [*splits, "total"])]
        for cat, per_split in self.counts.items():
            row = [per_split.get(s, 0) for s in splits]
            lines.append(f"{cat:<{width}}  " + "  ".join(f"{n:>6}" for n in [*row, sum(row)]))
        row = [self.splits[s] for s in splits]
        lines.append(f"{'scans':<{width}}  " + "  ".join(f"{n:>6}" for n in [*row, sum(row)]))
        lines.append(f"imported {self.imported} scans into {self.out} in {self.seconds:.1f} s; "
                     f"skipped {len(self.skipped)}")
        for s in self.skipped:
            where = f" (table line {s.row})" if s.row is not None else ""
            lines.append(f"  skipped {s.file}{where}: {s.reason}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def stored_suffix(f: ScanFile) -> str:
    """The suffix a copied file gets: its own when it names the content's format, else the format's."""
    own = f.path.suffix.lower()
    return own if _FORMAT_OF_SUFFIX.get(own) == f.format else _SUFFIX_OF_FORMAT[f.format]


class DatasetWriter:
    """Writes one dataset folder: images per split, COCO per split, manifests, truth, dataset.json.

    Args:
        out: The folder; it must not exist or be empty.
        categories: Category names in order; COCO category ids are 1..N in this order.

    Raises:
        ConfigError: `out` exists and is not empty.
    """

    def __init__(self, out: str | Path, categories: list[str]) -> None:
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"{self.out} exists and is not empty; choose a new folder")
        self.categories = list(categories)
        self.category_id = {name: i + 1 for i, name in enumerate(self.categories)}
        self.images: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.boxes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.truth: list[dict[str, Any]] = []
        self.seen: dict[str, tuple[str, str]] = {}  # content hash -> (scan id, file) of imported scans
        self.refused: dict[str, tuple[str, str]] = {}  # content hash -> (file, reason) of scans the reader refused
        for d in ["annotations", "manifests", *(f"images/{s}" for s in SPLITS)]:
            (self.out / d).mkdir(parents=True, exist_ok=True)
        # Accepted files wait here until every scan is read and the splits are dealt.
        self.staging = self.out / ".incoming"
        self.staging.mkdir()
        self.t0 = time.perf_counter()

    def accept(self, report: ImportReport, scan_id: str, high: Path, low: Path | None = None, *,
               pixel_mm: tuple[float, float] | None = None, row: int | None = None) -> Staged | None:
        """Read, deduplicate and decode one scan, and stage its file(s); None (and a report line) if refused.

        Duplicates are found by the sha256 of the bytes (of both files for a pair); every
        other scan is decoded once by the service's reader, so nothing unreadable enters.
        """
        try:
            high_file = ScanFile.load(high)
            low_file = ScanFile.load(low) if low is not None else None
        except ScanReadError as e:
            report.skip(e.path, e.reason, row=row)
            return None
        digest = high_file.sha256 if low_file is None else hashlib.sha256(
            (high_file.sha256 + low_file.sha256).encode()).hexdigest()
        if digest in self.seen:
            first_id, first_file = self.seen[digest]
            report.skip(high, f"duplicate of scan {first_id} ({first_file}): same bytes", row=row,
                        duplicate_of=first_id)
            return None
        if digest in self.refused:
            first_file, reason = self.refused[digest]
            report.skip(high, f"same bytes as {first_file}, which was not imported: {reason}", row=row)
            return None
        try:
            scan = decode_scan(high_file, low_file, scan_id=scan_id, pixel_mm=pixel_mm)
        except ScanReadError as e:
            report.skip(e.path, e.reason, row=row)
            self.refused[digest] = (str(high), e.reason)
            return None
        self.seen[digest] = (scan_id, str(high))
        return self.stage(scan_id, high_file, low_file, scan)

    def stage(self, scan_id: str, high: ScanFile, low: ScanFile | None, scan: Scan) -> Staged:
        """Copy a scan's file(s), byte for byte, into the staging folder until its split is known."""
        names = []
        for f, energy in ((high, "high"), (low, "low")):
            if f is None:
                continue
            name = f"{scan_id}_{energy}{stored_suffix(f)}"
            write_atomic(self.staging / name, f.data)
            names.append(name)
        _, height, width = scan.channels.shape
        return Staged(scan_id, names[0], names[1] if len(names) > 1 else None, int(width), int(height),
                      tuple(float(v) for v in scan.pixel_mm), list(scan.energies))  # type: ignore[arg-type]

    def add_image(self, split: str, staged: Staged) -> int:
        """Move a staged scan into `images/<split>/` and add its COCO image entry; returns its image id."""
        folder = self.out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in (staged.high_name, staged.low_name):
            if name is not None:
                os.replace(self.staging / name, folder / name)
        image_id = len(self.images[split]) + 1
        self.images[split].append({
            "id": image_id, "file_name": f"{split}/{staged.high_name}",
            "low_file_name": f"{split}/{staged.low_name}" if staged.low_name else None,
            "scan_id": staged.scan_id, "width": staged.width, "height": staged.height,
            "pixel_mm": list(staged.pixel_mm), "energies": staged.energies,
        })
        return image_id

    def add_box(self, split: str, image_id: int, category: str, bbox: list[float], *, iscrowd: int = 0) -> None:
        """A COCO box `[x, y, w, h]` in scan pixels, stored exactly as given."""
        anns = self.boxes[split]
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": self.category_id[category],
                     "bbox": list(bbox), "area": float(bbox[2]) * float(bbox[3]), "iscrowd": iscrowd})

    def add_manifest(self, scan_id: str, manifest: Manifest) -> None:
        write_atomic(self.out / "manifests" / f"{scan_id}.json", manifest.model_dump_json(indent=2, exclude_none=True))

    def add_truth(self, record: dict[str, Any]) -> None:
        self.truth.append(record)

    def abandon(self, report: ImportReport) -> None:
        """Leave only `import_report.json` (nothing was imported), so the user can read why."""
        shutil.rmtree(self.staging, ignore_errors=True)
        for d in ("images", "annotations", "manifests"):
            shutil.rmtree(self.out / d, ignore_errors=True)
        report.seconds = time.perf_counter() - self.t0
        write_atomic(self.out / "import_report.json", json.dumps(report.to_dict(), indent=2))

    def finish(self, report: ImportReport, *, generator: dict[str, Any], params: dict[str, Any],
               description: str) -> dict[str, Any]:
        """Write the COCO files, truth.jsonl, import_report.json and (last) dataset.json; returns dataset.json."""
        categories = [{"id": self.category_id[c], "name": c, "supercategory": "goods"} for c in self.categories]
        splits = {}
        for split in [s for s in SPLITS if self.images.get(s)] + sorted(set(self.images) - set(SPLITS)):
            splits[split] = len(self.images[split])
            coco = {"info": {"description": description, "version": xray.__version__},
                    "images": self.images[split], "annotations": self.boxes.get(split, []), "categories": categories}
            write_atomic(self.out / "annotations" / f"{split}.json", json.dumps(coco))
        shutil.rmtree(self.staging, ignore_errors=True)
        for d in (self.out / "images").iterdir():
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()  # a split that got no scans has no folder, as it has no annotations
        if self.truth:
            write_atomic(self.out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in self.truth))
        report.splits = splits
        report.seconds = time.perf_counter() - self.t0
        write_atomic(self.out / "import_report.json", json.dumps(report.to_dict(), indent=2))
        meta = {
            "format": "xray-dataset",
            "format_version": FORMAT_VERSION,
            "generator": {**generator, "version": xray.__version__, "python": platform.python_version()},
            "params": params,
            "splits": splits,
            "categories": self.categories,
            "boxes": sum(len(b) for b in self.boxes.values()) or False,
            "skipped": len(report.skipped),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(self.out / "dataset.json", json.dumps(meta, indent=2))
        return meta

