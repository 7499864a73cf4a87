"""Import a user's own labelled set, COCO or YOLO (Ultralytics), into the xray dataset layout.

The categories come from the data (never a fixed list): `dataset.json` records them in
order and COCO category ids become 1..N in that order; train with `classes:` set to them.
Boxes are COCO `[x, y, w, h]` in scan pixels. Labelled sets get no manifests: the
dataset reads manifests only for `image_labels: manifest`, which a set without
declarations has no use for (train with `image_labels: boxes`).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from xray.errors import DatasetError
from xray.sources.files import SCAN_SUFFIXES, split_energy_suffix

from .layout import DatasetWriter, ImportReport, Staged
from .splits import DEFAULT_FRACTIONS, SPLITS, assign_splits, check_fractions

# The stratum of an image without boxes.
BACKGROUND = "background"


@dataclass
class LabelledImage:
    """One image of a labelled set before import: its file(s), boxes and given split (if any)."""

    high: Path
    low: Path | None = None
    boxes: list[tuple[str, list[float], int]] = field(default_factory=list)  # (category, [x, y, w, h], iscrowd)
    split: str | None = None
    size: tuple[int, int] | None = None  # (width, height) that the labels claim, checked against the file
    pixel_mm: tuple[float, float] | None = None
    yolo: list[tuple[int, float, float, float, float]] | None = None  # normalised boxes, sized once read


def _scan_ids(images: list[LabelledImage]) -> list[str]:
    """File-name-safe, unique scan ids from the file stems."""
    used: set[str] = set()
    ids = []
    for img in images:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", split_energy_suffix(img.high.stem)[0]).lstrip(".") or "scan"
        sid, n = base, 1
        while sid in used:
            n += 1
            sid = f"{base}-{n}"
        used.add(sid)
        ids.append(sid)
    return ids


def _yolo_boxes(img: LabelledImage, staged: Staged, categories: list[str]) -> None:
    """Normalised YOLO boxes to absolute COCO `[x, y, w, h]` with the image's real size (clipped to it)."""
    for cls, cx, cy, w, h in img.yolo or []:
        x1, x2 = max(0.0, (cx - w / 2) * staged.width), min(float(staged.width), (cx + w / 2) * staged.width)
        y1, y2 = max(0.0, (cy - h / 2) * staged.height), min(float(staged.height), (cy + h / 2) * staged.height)
        # Rounded to a thousandth of a pixel: a box drawn on whole pixels comes back on whole pixels.
        img.boxes.append((categories[cls], [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)], 0))


def _write(images: list[LabelledImage], categories: list[str], out: str | Path, report: ImportReport, *,
           fractions: Sequence[float], seed: int, progress: bool, generator: dict[str, Any],
           params: dict[str, Any]) -> ImportReport:
    writer = DatasetWriter(out, categories)
    accepted: list[tuple[LabelledImage, Staged]] = []
    for img, scan_id in tqdm(list(zip(images, _scan_ids(images), strict=True)), desc="import", unit="image",
                             disable=not progress):
        staged = writer.accept(report, scan_id, img.high, img.low, pixel_mm=img.pixel_mm)
        if staged is None:
            continue
        if img.size is not None and img.size != (staged.width, staged.height):
            report.skip(img.high, f"the labels are for a {img.size[0]}x{img.size[1]} image but the file is "
                        f"{staged.width}x{staged.height}")
            continue
        _yolo_boxes(img, staged, categories)
        accepted.append((img, staged))
    if not accepted:
        writer.abandon(report)
        raise DatasetError(f"no image could be imported ({len(report.skipped)} skipped; "
                           f"see {writer.out / 'import_report.json'})")

    def stratum(img: LabelledImage) -> str:
        counts = Counter(c for c, _, _ in img.boxes)
        return min(counts, key=lambda c: (-counts[c], categories.index(c))) if counts else BACKGROUND

    if all(img.split is None for img, _ in accepted):
        split_of = assign_splits({s.scan_id: stratum(img) for img, s in accepted}, {}, fractions=fractions, seed=seed)
    else:
        split_of = {s.scan_id: img.split or SPLITS[0] for img, s in accepted}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for img, staged in accepted:
        split = split_of[staged.scan_id]
        image_id = writer.add_image(split, staged)
        for cat, bbox, iscrowd in img.boxes:
            writer.add_box(split, image_id, cat, bbox, iscrowd=iscrowd)
        for cat in dict.fromkeys(c for c, _, _ in img.boxes) or [BACKGROUND]:
            counts[cat][split] += 1
    report.counts = {c: dict(counts[c]) for c in [*categories, BACKGROUND] if c in counts}
    writer.finish(report, generator=generator, params=params,
                  description=f"xray dataset imported from a {report.source.upper()} labelled set")
    return report


# --- COCO ---------------------------------------------------------------------------------------------------


def _load_coco(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read COCO JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("categories"), list):
        raise DatasetError(f"{path}: not a COCO detection file (needs 'images' and 'categories' lists)")
    return data


def _coco_categories(path: Path, data: dict[str, Any], names: list[str]) -> dict[Any, str]:
    """COCO category id -> name; new names are appended to `names` in the file's order."""
    name_of: dict[Any, str] = {}
    for cat in data["categories"]:
        name = str(cat.get("name", "")).strip() if isinstance(cat, dict) else ""
        if not name or "id" not in cat:
            raise DatasetError(f"{path}: category {cat!r} needs an 'id' and a non-empty 'name'")
        if cat["id"] in name_of or name in name_of.values():
            raise DatasetError(f"{path}: category id {cat['id']!r} or name {name!r} appears twice")
        name_of[cat["id"]] = name
        if name not in names:
            names.append(name)
    return name_of


def _bbox(value: Any) -> list[float] | None:
    if not (isinstance(value, list) and len(value) == 4):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return list(value) if value[2] > 0 and value[3] > 0 else None


def import_coco(
    images_dir: str | Path,
    coco_json: str | Path | Mapping[str, str | Path],
    out: str | Path,
    *,
    splits: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    pixel_mm: tuple[float, float] | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import a COCO detection set (8- or 16-bit grey or RGB images) into the xray dataset layout.

    Args:
        images_dir: The folder that the images' `file_name`s are relative to.
        coco_json: One COCO file (split here by image, stratified by each image's most
            frequent category), or {split: file} to keep the user's splits.
        out: The dataset folder to write; must not exist or be empty.
        splits: Shares of train, val and test when one file is given.
        seed: Seed of that split.
        pixel_mm: Pixel spacing of every image (default: the entry's `pixel_mm`, the file's, or 5 mm).
        progress: Show a progress bar.

    Raises:
        DatasetError: a COCO file is unreadable or malformed, or no image could be imported.
    """
    fractions = check_fractions(splits)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: images folder not found")
    files = {None: Path(coco_json)} if isinstance(coco_json, (str, Path)) else {
        s: Path(p) for s, p in coco_json.items()}
    report = ImportReport(out=Path(out), source="coco")
    names: list[str] = []
    images: list[LabelledImage] = []
    for split, path in files.items():
        data = _load_coco(path)
        name_of = _coco_categories(path, data, names)
        by_id: dict[Any, LabelledImage] = {}
        for entry in data["images"]:
            if not isinstance(entry, dict) or not entry.get("file_name") or "id" not in entry:
                report.skip(path, f"image entry {entry!r:.80} needs an 'id' and a 'file_name'")
                continue
            size = (entry["width"], entry["height"]) if "width" in entry and "height" in entry else None
            low = entry.get("low_file_name")
            img = LabelledImage(images_dir / entry["file_name"], images_dir / low if low else None, split=split,
                                size=size, pixel_mm=pixel_mm or _entry_pixel_mm(entry))
            by_id[entry["id"]] = img
            images.append(img)
        for ann in data.get("annotations") or []:
            target = by_id.get(ann.get("image_id")) if isinstance(ann, dict) else None
            where = target.high if target is not None else path
            if target is None:
                report.skip(where, f"annotation {ann!r:.80} refers to no image of the file")
            elif ann.get("category_id") not in name_of:
                report.skip(where, f"annotation {ann.get('id')}: unknown category id {ann.get('category_id')!r}")
            elif (bbox := _bbox(ann.get("bbox"))) is None:
                report.skip(where, f"annotation {ann.get('id')}: bad bbox {ann.get('bbox')!r} (needs [x, y, w, h], "
                            "w and h > 0)")
            else:
                target.boxes.append((name_of[ann["category_id"]], bbox, int(bool(ann.get("iscrowd", 0)))))
    return _write(images, names, out, report, fractions=fractions, seed=seed, progress=progress,
                  generator={"name": "xray dataset import", "source": "coco"},
                  params={"images": str(images_dir), "coco": {str(s): str(p) for s, p in files.items()},
                          "split_fractions": list(fractions), "seed": seed})


def _entry_pixel_mm(entry: dict[str, Any]) -> tuple[float, float] | None:
    value = entry.get("pixel_mm")
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in value):
        return (float(value[0]), float(value[1]))
    return None


# --- YOLO ---------------------------------------------------------------------------------------------------


def _yolo_names(data_yaml: Path, names: Any) -> list[str]:
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{data_yaml}: names keys must be class numbers, got {list(names)}") from e
        if ids != list(range(len(ids))):
            raise DatasetError(f"{data_yaml}: class numbers in names must be 0..{len(ids) - 1}, got {ids}")
        return [str(names[k]) for k in sorted(names, key=int)]
    raise DatasetError(f"{data_yaml}: needs 'names', a list or a {{number: name}} mapping of the classes")


def _yolo_images(data_yaml: Path, root: Path, value: Any) -> list[Path]:
    """The image files of one split entry: a folder, a list of folders, or a .txt list of images."""
    entries = value if isinstance(value, list) else [value]
    found: list[Path] = []
    for entry in entries:
        path = (root / str(entry)).resolve()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)
        elif path.is_file() and path.suffix == ".txt":
            found += [(root / line.strip()).resolve() for line in path.read_text().splitlines() if line.strip()]
        else:
            raise DatasetError(f"{data_yaml}: image folder {entry!r} not found (looked in {path})")
    return found


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo_labels(image: Path, n_classes: int, report: ImportReport) -> list[tuple[int, float, float, float, float]]:
    path = _label_path(image)
    if not path.is_file():
        return []  # an image without a label file is background in YOLO
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        report.skip(path, f"cannot read labels: {e}")
        return []
    boxes = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            report.skip(path, f"line {n}: not 'class cx cy w h' numbers: {line.strip()!r:.80}")
            continue
        if len(values) >= 6 and len(values) % 2 == 0:  # a segment polygon: its bounding box
            xs, ys = values[0::2], values[1::2]
            values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
        if len(values) != 4:
            report.skip(path, f"line {n}: needs 5 fields 'class cx cy w h', got {len(fields)}")
        elif not 0 <= cls < n_classes:
            report.skip(path, f"line {n}: class {cls} is out of range (the set has {n_classes} classes, 0..{n_classes - 1})")
        elif not all(math.isfinite(v) and -0.01 <= v <= 1.01 for v in values) or values[2] <= 0 or values[3] <= 0:
            report.skip(path, f"line {n}: box {values} is not normalised to [0, 1] with w, h > 0")
        else:
            boxes.append((cls, values[0], values[1], values[2], values[3]))
    return boxes


def import_yolo(
    root: str | Path,
    out: str | Path,
    *,
    splits: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    pixel_mm: tuple[float, float] | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import an Ultralytics YOLO set (`data.yaml`, images/ and labels/) into the xray dataset layout.

    Args:
        root: The `data.yaml` file, or the folder holding it.
        out: The dataset folder to write; must not exist or be empty.
        splits: Shares of train, val and test, used when data.yaml names only `train`.
        seed: Seed of that split.
        pixel_mm: Pixel spacing of every image (default: the file's, or 5 mm).
        progress: Show a progress bar.

    Raises:
        DatasetError: data.yaml is missing or malformed, or no image could be imported.
    """
    fractions = check_fractions(splits)
    data_yaml = Path(root)
    if data_yaml.is_dir():
        data_yaml = next((data_yaml / n for n in ("data.yaml", "data.yml") if (data_yaml / n).is_file()),
                         data_yaml / "data.yaml")
    try:
        spec = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DatasetError(f"{data_yaml}: cannot read the YOLO data file: {e}") from e
    if not isinstance(spec, dict):
        raise DatasetError(f"{data_yaml}: not a YOLO data file (a mapping with names and train)")
    names = _yolo_names(data_yaml, spec.get("names"))
    base = Path(str(spec.get("path") or "."))
    base = base if base.is_absolute() else data_yaml.parent / base
    given = [s for s in SPLITS if spec.get(s)]
    if "train" not in given:
        raise DatasetError(f"{data_yaml}: needs a 'train' image folder")
    report = ImportReport(out=Path(out), source="yolo")
    images: list[LabelledImage] = []
    for split in given:
        for path in _yolo_images(data_yaml, base, spec[split]):
            images.append(LabelledImage(path, split=split if len(given) > 1 else None, pixel_mm=pixel_mm,
                                        yolo=_yolo_labels(path, len(names), report)))
    return _write(images, names, out, report, fractions=fractions, seed=seed, progress=progress,
                  generator={"name": "xray dataset import", "source": "yolo"},
                  params={"data": str(data_yaml), "split_fractions": list(fractions), "seed": seed})
