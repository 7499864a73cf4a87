"""The one reader of the dataset layout (xray.data.format): records, truth, boxes and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_dataset import write_dataset

from xray.calibration import labelled_scans
from xray.data.format import check_dataset, read_truth, split_records
from xray.errors import DatasetError
from xray.scan import DEFAULT_PIXEL_MM, ScanKind
from xray.sources.files import read_scan


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("fmt") / "ds", splits={"train": 3, "test": 2}, seed=7)


def test_records_carry_files_boxes_truth_and_manifest(data: Path) -> None:
    coco = json.loads((data / "annotations" / "train.json").read_text())
    records = split_records(data, "train")
    assert [r.scan_id for r in records] == [e["scan_id"] for e in coco["images"]]
    first = records[0]
    assert first.high == data / "images" / "train" / f"{first.scan_id}_high.png" and first.low is not None
    assert first.truth is not None and first.truth["split"] == "train"
    boxes = [a for a in coco["annotations"] if a["image_id"] == first.image_id]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [(b.category, list(b.bbox)) for b in first.boxes] == [(names[a["category_id"]], a["bbox"]) for a in boxes]
    assert sorted(first.manifest().categories()[0]) == sorted(first.truth["declared"])


def test_a_record_reads_the_same_pixels_as_the_inspection_reader(data: Path) -> None:
    r = split_records(data, "test")[1]
    scan = r.read()
    direct = read_scan(r.high, r.low)
    assert scan.id == r.scan_id and scan.kind is ScanKind.DUAL and scan.energies == ("6MV", "4MV")
    np.testing.assert_array_equal(scan.channels, direct.channels)


def test_missing_pixel_spacing_is_the_default_one(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", splits={"test": 1})
    path = root / "annotations" / "test.json"
    coco = json.loads(path.read_text())
    del coco["images"][0]["pixel_mm"]
    path.write_text(json.dumps(coco))
    (record,) = split_records(root, "test")
    assert record.pixel_mm == DEFAULT_PIXEL_MM and record.read().pixel_mm == DEFAULT_PIXEL_MM


def test_labelled_scans_is_the_reader_with_truth_required(data: Path) -> None:
    items = labelled_scans(data, "test")
    records = split_records(data, "test", truth=True)
    assert [(i["scan_id"], i["high"], i["low"], i["manifest"], i["truth"]) for i in items] == [
        (r.scan_id, r.high, r.low, r.manifest_path, r.truth) for r in records]


@pytest.mark.parametrize(("breakage", "words"), [
    ("truth_not_json", "truth.jsonl:2: not JSON"),
    ("truth_missing_scan", "has no line in truth.jsonl"),
    ("no_file_name", "has no file_name"),
    ("bad_pixel_mm", "expected [row_mm, col_mm]"),
    ("images_not_a_list", "no 'images' list"),
])
def test_broken_layouts_name_the_file_and_the_fault(tmp_path: Path, breakage: str, words: str) -> None:
    root = write_dataset(tmp_path / "ds", splits={"test": 2})
    ann = root / "annotations" / "test.json"
    coco = json.loads(ann.read_text())
    truth = root / "truth.jsonl"
    lines = truth.read_text().splitlines()
    if breakage == "truth_not_json":
        truth.write_text(lines[0] + "\n{oops\n")
    elif breakage == "truth_missing_scan":
        truth.write_text(lines[0] + "\n")
    elif breakage == "no_file_name":
        del coco["images"][1]["file_name"]
    elif breakage == "bad_pixel_mm":
        coco["images"][0]["pixel_mm"] = ["five", 5]
    elif breakage == "images_not_a_list":
        coco["images"] = {}
    ann.write_text(json.dumps(coco))
    with pytest.raises(DatasetError) as e:
        split_records(root, "test", truth=True)
    assert words in str(e.value)
    assert str(truth if breakage.startswith("truth_not") else root) in str(e.value)


def test_truth_of_one_split_only(data: Path) -> None:
    assert {t["split"] for t in read_truth(data, "train").values()} == {"train"}
    assert len(read_truth(data)) == 5


def test_check_reads_every_manifest(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", splits={"val": 1})
    (root / "manifests" / "s000001.json").write_text('{"lines": 3}')
    with pytest.raises(DatasetError, match="s000001.json"):
        check_dataset(root)
