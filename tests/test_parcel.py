"""The parcel and baggage scene: physics colours, exact boxes, declarations, the dataset, the CLI,
and parcel declarations verified with the parcel goods table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from xray.data.format import check_dataset, split_records
from xray.detection import Detection, Detections
from xray.errors import ConfigError
from xray.goods import goods_table
from xray.manifest import Manifest, ManifestLine
from xray.simulate.parcel import (
    MATERIALS,
    SIZE,
    generate_parcel_dataset,
    pseudo_colour,
    simulate_parcel,
    spectra,
    transmission,
)
from xray.simulate.parcel_goods import CONTRABAND
from xray.verdict import Channel, FindingKind
from xray.verify import VerifierConfig, verify

ROOT = Path(__file__).resolve().parents[1]


def _hue_of(material: str, gcm2: float = 3.0) -> float:
    maps = {m: np.full((4, 4), gcm2 if m == material else 0.0, np.float32) for m in MATERIALS}
    low, high = spectra()
    bgr = pseudo_colour(transmission(maps, low), transmission(maps, high))
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[0, 0, 0])


def test_pseudo_colour_is_orange_organic_green_mixed_blue_metal_and_white_air() -> None:
    assert 5 <= _hue_of("organic") <= 25  # OpenCV hue: orange
    assert 45 <= _hue_of("aluminium") <= 75  # green
    assert 100 <= _hue_of("iron") <= 125  # blue
    air = {m: np.zeros((2, 2), np.float32) for m in MATERIALS}
    low, high = spectra()
    assert pseudo_colour(transmission(air, low), transmission(air, high)).min() >= 250


def test_low_energy_attenuates_more_and_more_so_for_iron() -> None:
    low, high = spectra()

    def ratio(m: str) -> float:
        maps = {k: np.full((1, 1), 3.0 if k == m else 0.0, np.float32) for k in MATERIALS}
        return float(np.log(transmission(maps, low))[0, 0] / np.log(transmission(maps, high))[0, 0])

    assert 1.0 < ratio("organic") < ratio("aluminium") < ratio("iron")


def test_a_parcel_is_a_function_of_its_seed_with_exact_small_boxes() -> None:
    a, b, c = simulate_parcel(11), simulate_parcel(11), simulate_parcel(12)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes and a.manifest == b.manifest
    assert not np.array_equal(a.image, c.image)
    sides = []
    for seed in range(30):
        p = simulate_parcel(seed)
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8
        for _, (x1, y1, x2, y2) in p.boxes:
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            sides.append(max(x2 - x1, y2 - y1))
            # Exact: the box's border rows and columns hold some of the item (darker than its inside's air).
            crop = p.image[y1:y2, x1:x2].astype(int).sum(axis=2)
            assert crop.min() < p.image[0, 0].astype(int).sum()
    assert min(sides) >= 15 and max(sides) <= 90


def test_declarations_list_everyday_goods_and_never_the_contraband() -> None:
    table = goods_table("parcel")
    seen_contraband = 0
    for seed in range(40):
        p = simulate_parcel(seed)
        declared, unknown = p.manifest.categories(table)
        assert not unknown and declared and sorted(declared) == p.truth["declared"]
        loaded = {c for c, _ in p.boxes}
        assert set(p.truth["undeclared"]) <= loaded and not set(p.truth["undeclared"]) & set(declared)
        assert p.truth["mismatch"] == bool(p.truth["undeclared"])
        seen_contraband += bool(loaded & set(CONTRABAND))
    assert 5 <= seen_contraband <= 30  # contraband_rate 0.4 of 40


def test_parcel_dataset_follows_the_layout_and_names_its_goods_table(tmp_path: Path) -> None:
    out = tmp_path / "parcels"
    summary = generate_parcel_dataset(out, count=10, seed=5, progress=False)
    assert summary["goods_table"] == "parcel" and summary["categories"] == goods_table("parcel").keys
    report = check_dataset(out)
    assert report  # the one reader accepts it
    records = split_records(out, "train", truth=True)
    assert len(records) == 8
    scan = records[0].read()
    assert scan.kind.value == "rgb" and scan.width == SIZE
    assert records[0].boxes and records[0].truth is not None
    again = tmp_path / "again"
    generate_parcel_dataset(again, count=10, seed=5, progress=False)
    for f in (out / "images" / "train").iterdir():
        assert f.read_bytes() == (again / "images" / "train" / f.name).read_bytes()
    with pytest.raises(ConfigError, match="not empty"):
        generate_parcel_dataset(out, count=2, progress=False)


def test_parcel_dataset_scaled_export_keeps_boxes_on_their_items(tmp_path: Path) -> None:
    generate_parcel_dataset(tmp_path / "s", count=5, seed=1, splits=(1.0, 0.0, 0.0), scale=0.5, progress=False)
    coco = json.loads((tmp_path / "s" / "annotations" / "train.json").read_text())
    assert all(im["width"] == SIZE // 2 for im in coco["images"])
    full = simulate_parcel(int(json.loads((tmp_path / "s" / "truth.jsonl").read_text().splitlines()[0])["seed"]))
    first = [a for a in coco["annotations"] if a["image_id"] == 1]
    for a, (_, (x1, y1, x2, y2)) in zip(first, full.boxes):
        assert abs(a["bbox"][0] - x1 / 2) <= 1 and abs(a["bbox"][2] - (x2 - x1) / 2) <= 2
        assert abs(a["bbox"][1] - y1 / 2) <= 1 and abs(a["bbox"][3] - (y2 - y1) / 2) <= 2


def test_cli_simulates_parcels_and_refuses_container_options(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "xray.cli", "simulate", "--scene", "parcel", "--count", "3", "--quiet"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "p")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["params"]["scene"] == "parcel"
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "q"), "--profile", "pseudo-colour"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--scene parcel" in bad.stderr


def test_parcel_declaration_verified_with_the_parcel_table() -> None:
    config = VerifierConfig.from_card({"goods_table": "parcel"})
    assert config.goods_table == "parcel"
    manifest = Manifest(container_id="P1", lines=[ManifestLine(hs_code="6109", description="t-shirts")])
    found = Detections(detections=[Detection(box=(10, 10, 40, 30), category="clothing", score=0.9),
                                   Detection(box=(60, 60, 90, 75), category="knife", score=0.95)])
    v = verify(found, manifest, config=config)
    assert v.channel == Channel.RED
    assert any(f.kind == FindingKind.UNDECLARED and f.category == "knife" for f in v.findings)
    assert not any(f.kind == FindingKind.UNKNOWN_HS for f in v.findings)  # 6109 is clothing in the parcel table
    clean = verify(Detections(detections=found.detections[:1]), manifest, config=config)
    assert clean.channel == Channel.GREEN
    # The cargo table (the default) does not know knives: the same parcel is not read as a parcel.
    cargo = verify(found, manifest)
    assert not any(f.category == "knife" for f in cargo.findings)


def test_unknown_goods_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        goods_table(str(ROOT / "no-such-table.yaml"))
