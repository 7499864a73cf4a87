"""`xray dataset import`: customs archives, COCO and YOLO labelled sets into the xray dataset layout."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from xray.data.archive import import_archive
from xray.data.dataset import XrayDataset
from xray.data.dataset_import import add_import_arguments, run_import
from xray.data.labelled import import_coco, import_yolo
from xray.data.splits import assign_splits
from xray.errors import ConfigError, DatasetError
from xray.goods import default_goods_table
from xray.manifest import Manifest
from xray.model.preprocess import InputSpec

# category -> an HS code declaring it
HS = {"tobacco": "240220", "textiles": "6109.10", "machinery": "847130", "beverages": "2203"}


def _grey(seed: int, h: int = 64, w: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _write(path: Path, pixels: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _archive(tmp: Path, n: int = 40) -> tuple[Path, Path, dict[str, Path]]:
    """n good scans (n/4 per category, two per container) plus one of each kind of bad row.

    Returns (scans folder, CSV table, {kind: file} of the bad rows).
    """
    scans = tmp / "scans"
    scans.mkdir()
    cats = list(HS)
    rows = []
    for i in range(n):
        suffix = ".jpg" if i % 2 else ".png"  # 8-bit JPEG exports beside PNG
        _write(scans / f"scan{i:03d}{suffix}", _grey(i))
        rows.append({"file": f"scan{i:03d}{suffix}", "container_id": f"CONT{i % (n // 2):03d}",
                     "hs_codes": HS[cats[i % 4]], "operator": "x"})
    jpeg = _write(scans / "cut.jpg", _grey(1000))
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    (scans / "notes.png").write_text("this is not an image\n")
    (scans / "again.png").write_bytes((scans / "scan000.png").read_bytes())
    _write(scans / "badcode.png", _grey(1001))
    bad = {"truncated": scans / "cut.jpg", "text": scans / "notes.png", "duplicate": scans / "again.png",
           "missing": scans / "gone.png", "bad_hs": scans / "badcode.png"}
    for kind, path in bad.items():
        rows.append({"file": path.name, "container_id": f"BAD{kind}", "hs_codes": "84x1" if kind == "bad_hs" else "8471",
                     "operator": ""})
    table = tmp / "declarations.csv"
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return scans, table, bad


def _splits(out: Path) -> dict[str, str]:
    return {t["scan_id"]: t["split"] for t in map(json.loads, (out / "truth.jsonl").read_text().splitlines())}


def test_archive_import_names_each_bad_file_and_keeps_the_good_ones(tmp_path: Path) -> None:
    scans, table, bad = _archive(tmp_path)
    out = tmp_path / "ds"
    report = import_archive(scans, table, out, progress=False)

    assert report.imported == 40
    why = {Path(s.file).name: s for s in report.skipped}
    assert set(why) == {p.name for p in bad.values()}
    assert "truncated JPEG" in why["cut.jpg"].reason
    assert "not PNG" in why["notes.png"].reason
    assert why["again.png"].duplicate_of == "scan000"
    assert why["gone.png"].reason == "file not found"
    assert "invalid HS code '84x1'" in why["badcode.png"].reason
    summary = report.summary()
    for path in bad.values():
        assert path.name in summary
    assert any("operator" in w for w in report.warnings)
    saved = json.loads((out / "import_report.json").read_text())
    assert {Path(s["file"]).name for s in saved["skipped"]} == set(why)

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == "xray-dataset" and meta["format_version"] == 1
    assert meta["generator"]["name"] == "xray dataset import" and meta["generator"]["source"] == "archive"
    assert meta["boxes"] is False and meta["categories"] == default_goods_table().keys
    assert sum(meta["splits"].values()) == 40
    entries = {}
    for split in meta["splits"]:
        coco = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert coco["annotations"] == []
        assert [c["name"] for c in coco["categories"]] == default_goods_table().keys
        entries.update({e["scan_id"]: e for e in coco["images"]})
    # Copied byte for byte, under the source's suffix: a JPEG stays that JPEG.
    e = entries["scan001"]
    assert e["file_name"].endswith("scan001_high.jpg") and (e["width"], e["height"]) == (160, 64)
    copied = (out / "images" / e["file_name"]).read_bytes()
    assert hashlib.sha256(copied).digest() == hashlib.sha256((scans / "scan001.jpg").read_bytes()).digest()
    manifest = Manifest.load(out / "manifests" / "scan002.json")
    assert manifest.container_id == "CONT002" and [ln.hs_code for ln in manifest.lines] == ["847130"]
    truth = {t["scan_id"]: t for t in map(json.loads, (out / "truth.jsonl").read_text().splitlines())}
    assert truth["scan001"]["declared"] == ["textiles"] and truth["scan001"]["container"] == "CONT001"
    assert "mismatch" not in truth["scan001"]  # no outcome column: nothing known about the contents


def test_archive_split_is_deterministic_grouped_by_container_and_stratified(tmp_path: Path) -> None:
    scans, table, _ = _archive(tmp_path)
    runs = [_splits(import_archive(scans, table, tmp_path / f"ds{k}", seed=seed, progress=False).out)
            for k, seed in enumerate((7, 7, 8))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    truth = [json.loads(t) for t in (tmp_path / "ds0" / "truth.jsonl").read_text().splitlines()]
    splits_of_container: dict[str, set[str]] = {}
    for t in truth:
        splits_of_container.setdefault(t["container"], set()).add(t["split"])
    assert all(len(s) == 1 for s in splits_of_container.values())
    for cat in HS:  # 10 scans each
        splits = {t["split"] for t in truth if t["declared"] == [cat]}
        assert "train" in splits and splits & {"val", "test"}, (cat, splits)


def test_assign_splits_keeps_groups_whole_and_follows_the_shares() -> None:
    strata = {i: "a" if i < 60 else "b" for i in range(100)}
    groups = {i: f"g{i // 3}" for i in range(100)}
    split = assign_splits(strata, groups, fractions=(0.6, 0.2, 0.2), seed=1)
    for g in set(groups.values()):
        assert len({split[i] for i in strata if groups[i] == g}) == 1
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert abs(counts["train"] - 60) <= 4 and abs(counts["val"] - 20) <= 4
    with pytest.raises(ConfigError, match="sum to 1"):
        assign_splits(strata, groups, fractions=(0.6, 0.6, 0.2))


def test_archive_outcomes_give_loaded_and_mismatch(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    rows = [
        {"high": "a_high.png", "low": "a_low.png", "container_id": "C1", "hs_codes": ["8471"], "outcome": "confirmed",
         "pixel_mm": [4.0, 5.0]},
        {"file": "b.png", "container_id": "C2", "hs_codes": "6109", "outcome": "goods_found", "found_hs": "2402 6109"},
        {"file": "c.png", "container_id": "C3", "hs_codes": "", "outcome": "found_empty"},
        {"file": "d.png", "container_id": "C4", "hs_codes": "2203", "outcome": "found_empty"},
        {"file": "e.png", "container_id": "C5", "hs_codes": "2203", "outcome": "lost"},
        {"file": "../decl.jsonl", "container_id": "C6", "hs_codes": "2203"},
        {"file": "f.tif", "container_id": "C7", "hs_codes": "8703"},
        {"file": "g.png", "container_id": "C8", "hs_codes": "3004.90"},  # medicines: no goods category
    ]
    dual = np.stack([_grey(10), _grey(11)]).astype(np.uint16) * 257
    tifffile.imwrite(scans / "f.tif", dual, photometric="minisblack")
    for i, name in enumerate(["a_high", "a_low", "b", "c", "d", "e", "g"]):
        _write(scans / f"{name}.png", _grey(i).astype(np.uint16) * 257)  # 16-bit
    table = tmp_path / "decl.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    report = import_archive(scans, table, tmp_path / "ds", progress=False)

    assert report.imported == 6
    assert report.counts["unmapped"] == {truth_split: 1 for truth_split in report.counts["unmapped"]}
    assert any("300490 (1 lines)" in w for w in report.warnings)
    reasons = sorted(s.reason for s in report.skipped)
    assert any("outcome 'lost'" in r for r in reasons) and any("not a JSON object" in r for r in reasons)
    assert any("outside the scans folder" in r for r in reasons)
    truth = {t["scan_id"]: t for t in map(json.loads, (tmp_path / "ds" / "truth.jsonl").read_text().splitlines())}
    assert truth["a"]["loaded"] == ["machinery"] and truth["a"]["mismatch"] is False
    assert truth["b"]["loaded"] == ["tobacco", "textiles"] and truth["b"]["undeclared"] == ["tobacco"]
    assert truth["b"]["mismatch"] is True and truth["b"]["scenario"] == "undeclared"
    assert truth["c"]["declared"] == [] and truth["c"]["mismatch"] is False and truth["c"]["scenario"] == "empty"
    assert truth["d"]["mismatch"] is True and truth["d"]["scenario"] == "empty_declared_loaded"
    entry = next(e for s in ("train", "val", "test") if (tmp_path / "ds" / "annotations" / f"{s}.json").is_file()
                 for e in json.loads((tmp_path / "ds" / "annotations" / f"{s}.json").read_text())["images"]
                 if e["scan_id"] == "a")
    assert entry["low_file_name"].endswith("a_low.png") and entry["pixel_mm"] == [4.0, 5.0]
    assert "outcome" not in truth["f"] and truth["f"]["declared"] == ["vehicles"]
    f_entries = [e for s in ("train", "val", "test") if (tmp_path / "ds" / "annotations" / f"{s}.json").is_file()
                 for e in json.loads((tmp_path / "ds" / "annotations" / f"{s}.json").read_text())["images"]
                 if e["scan_id"] == "f"]
    assert f_entries[0]["file_name"].endswith("f_high.tif") and f_entries[0]["low_file_name"] is None
    assert f_entries[0]["energies"] == []  # a two-page TIFF without labels: dual energy, unlabelled


@pytest.mark.parametrize("header", ["file,hs_codes", "file,container_id", "container_id,hs_codes"])
def test_archive_table_without_a_required_column_names_it(tmp_path: Path, header: str) -> None:
    (tmp_path / "scans").mkdir()
    table = tmp_path / "t.csv"
    table.write_text(header + "\nx.png,1\n")
    missing = ({"file", "container_id", "hs_codes"} - set(header.split(","))).pop()
    with pytest.raises(DatasetError, match=rf"t\.csv.*'{missing}'"):
        import_archive(tmp_path / "scans", table, tmp_path / "ds", progress=False)


def test_archive_of_only_unreadable_files_fails_clearly_and_keeps_the_report(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "x.png").write_bytes(b"")
    table = tmp_path / "t.csv"
    table.write_text("file,container_id,hs_codes\nx.png,C1,8471\n")
    with pytest.raises(DatasetError, match="no scan could be imported"):
        import_archive(tmp_path / "scans", table, tmp_path / "ds", progress=False)
    saved = json.loads((tmp_path / "ds" / "import_report.json").read_text())
    assert saved["skipped"][0]["reason"] == "empty file (0 bytes)"
    with pytest.raises(ConfigError, match="not empty"):
        import_archive(tmp_path / "scans", table, tmp_path / "ds", progress=False)


def test_imported_archive_trains_on_declarations(tmp_path: Path) -> None:
    scans, table, _ = _archive(tmp_path)
    out = import_archive(scans, table, tmp_path / "ds", progress=False).out
    ds = XrayDataset(out, "train", spec=InputSpec(mode="single", size=(64, 160)), image_labels="manifest")
    assert len(ds) == json.loads((out / "dataset.json").read_text())["splits"]["train"]
    image, target, labels = ds[0]
    assert image.shape == (1, 64, 160) and target["boxes"].shape == (0, 4)
    scan_id = ds.entry(0)["scan_id"]
    cats, _ = Manifest.load(out / "manifests" / f"{scan_id}.json").categories()
    assert [ds.classes[i] for i in np.flatnonzero(labels.numpy() == 1)] == cats


def _coco_set(tmp: Path) -> tuple[Path, dict]:
    images = tmp / "photos"
    (images / "sub").mkdir(parents=True)
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": 7, "name": "knife"}, {"id": 3, "name": "gun"}, {"id": 9, "name": "bottle"}]}
    for i in range(12):
        rgb = np.stack([_grey(100 + i, 80, 120)] * 3, axis=2)
        _write(images / "sub" / f"img {i}.png", rgb)
        coco["images"].append({"id": 100 + i, "file_name": f"sub/img {i}.png", "width": 120, "height": 80})
        cat = 7 if i < 8 else 3
        coco["annotations"].append({"id": 2 * i, "image_id": 100 + i, "category_id": cat, "bbox": [1.5, 2, 30.25, 40]})
        coco["annotations"].append({"id": 2 * i + 1, "image_id": 100 + i, "category_id": 3, "bbox": [60, 10, 5, 7]})
    coco["annotations"].append({"id": 99, "image_id": 100, "category_id": 42, "bbox": [0, 0, 5, 5]})
    coco["annotations"].append({"id": 98, "image_id": 101, "category_id": 7, "bbox": [0, 0, -5, 5]})
    return images, coco


def test_coco_round_trip_keeps_boxes_and_the_data_categories(tmp_path: Path) -> None:
    images, coco = _coco_set(tmp_path)
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    report = import_coco(images, tmp_path / "coco.json", tmp_path / "ds", progress=False)

    assert report.imported == 12
    assert sorted(s.reason.split(":")[0] for s in report.skipped) == ["annotation 98", "annotation 99"]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["categories"] == ["knife", "gun", "bottle"] and meta["boxes"] == 24
    assert meta["generator"]["source"] == "coco"
    boxes: dict[str, list[tuple[int, list[float]]]] = {}
    for split in meta["splits"]:
        out = json.loads((tmp_path / "ds" / "annotations" / f"{split}.json").read_text())
        assert out["categories"] == [{"id": 1, "name": "knife", "supercategory": "goods"},
                                     {"id": 2, "name": "gun", "supercategory": "goods"},
                                     {"id": 3, "name": "bottle", "supercategory": "goods"}]
        names = {e["id"]: e["scan_id"] for e in out["images"]}
        for a in out["annotations"]:
            boxes.setdefault(names[a["image_id"]], []).append((a["category_id"], a["bbox"]))
    assert boxes["img_0"] == [(1, [1.5, 2, 30.25, 40]), (2, [60, 10, 5, 7])]
    assert boxes["img_9"] == [(2, [1.5, 2, 30.25, 40]), (2, [60, 10, 5, 7])]
    assert not (tmp_path / "ds" / "manifests").exists() or not any((tmp_path / "ds" / "manifests").iterdir())

    ds = XrayDataset(tmp_path / "ds", "train", spec=InputSpec(mode="rgb", size=(64, 96)), classes=meta["categories"])
    _, target, labels = ds[0]
    assert len(target["boxes"]) == 2 and labels.sum() >= 1


def test_coco_per_split_files_keep_the_users_splits(tmp_path: Path) -> None:
    images, coco = _coco_set(tmp_path)
    train = {**coco, "images": coco["images"][:9]}
    val = {**coco, "images": coco["images"][9:], "categories": list(reversed(coco["categories"]))}
    for name, data in (("train", train), ("val", val)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    parser = argparse.ArgumentParser()
    add_import_arguments(parser)
    args = parser.parse_args(["coco", "--images", str(images), "--coco", f"train={tmp_path / 'train.json'}",
                              f"val={tmp_path / 'val.json'}", "--out", str(tmp_path / "ds"), "--quiet"])
    assert run_import(args) == 0
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["splits"] == {"train": 9, "val": 3}
    assert meta["categories"] == ["knife", "gun", "bottle"]
    val_out = json.loads((tmp_path / "ds" / "annotations" / "val.json").read_text())
    assert {a["category_id"] for a in val_out["annotations"]} == {2}  # gun, renumbered across files by name


def test_yolo_boxes_come_out_in_exact_pixels_and_bad_lines_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: crate, 1: drum}\n")
    # A 200 x 100 image with a box at x 20..70, y 10..40 (pixels).
    _write(root / "images" / "train" / "a.jpg", _grey(1, 100, 200))
    (root / "labels" / "train" / "a.txt").write_text(
        "1 0.225 0.25 0.25 0.3\n0 0.5 0.5\n5 0.5 0.5 0.1 0.1\n0 oops 0.5 0.1 0.1\n0 0.1 0.1 0.3 0.1 0.3 0.3\n")
    _write(root / "images" / "train" / "b.png", _grey(2, 100, 200))  # no label file: background
    _write(root / "images" / "val" / "c.png", (_grey(3, 50, 80).astype(np.uint16) * 257))
    (root / "labels" / "val" / "c.txt").write_text("0 0.5 0.5 1 1\n")
    report = import_yolo(root, tmp_path / "ds", progress=False)

    assert report.imported == 3
    reasons = [s.reason for s in report.skipped]
    assert len(reasons) == 3
    assert any(r.startswith("line 2:") for r in reasons)
    assert any(r.startswith("line 3: class 5 is out of range") for r in reasons)
    assert any(r.startswith("line 4:") for r in reasons)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["categories"] == ["crate", "drum"] and meta["splits"] == {"train": 2, "val": 1}
    train = json.loads((tmp_path / "ds" / "annotations" / "train.json").read_text())
    a_id = next(e["id"] for e in train["images"] if e["scan_id"] == "a")
    assert [(x["category_id"], x["bbox"]) for x in train["annotations"] if x["image_id"] == a_id] == [
        (2, [20.0, 10.0, 50.0, 30.0]), (1, [20.0, 10.0, 40.0, 20.0])]  # the polygon line: its bounding box
    val = json.loads((tmp_path / "ds" / "annotations" / "val.json").read_text())
    assert val["annotations"][0]["bbox"] == [0.0, 0.0, 80.0, 50.0]


def test_yolo_without_names_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(DatasetError, match="names"):
        import_yolo(tmp_path, tmp_path / "ds", progress=False)
