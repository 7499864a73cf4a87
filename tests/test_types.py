"""Core types: Scan contract, Manifest parsing, the goods table."""

import json

import numpy as np
import pytest

from xray.detection import Detection
from xray.errors import ConfigError, ManifestError, ScanError
from xray.goods import default_goods_table, load_goods_table
from xray.manifest import Manifest
from xray.scan import Scan, ScanKind


def _scan(shape=(2, 64, 128), dtype=np.float32, kind=ScanKind.DUAL, **kw):
    return Scan(id="s1", channels=np.full(shape, 0.5, dtype=dtype), kind=kind, **kw)


def test_scan_accepts_dual_energy_and_computes_attenuation():
    s = _scan()
    assert (s.height, s.width) == (64, 128)
    a = s.attenuation()
    assert a.dtype == np.float32 and np.allclose(a, -np.log(0.5))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"dtype": np.float64}, "float32"),
        ({"shape": (1, 64, 128)}, "shape"),
        ({"shape": (2, 4, 128)}, "absurd"),
        ({"shape": (2, 64, 40000)}, "absurd"),
        ({"pixel_mm": (0.0, 5.0)}, "spacing"),
        ({"bit_depth": 12}, "bit depth"),
    ],
)
def test_scan_rejects_broken_data(kw, message):
    with pytest.raises(ScanError, match=message):
        _scan(**kw)


def test_rgb_scan_has_no_attenuation():
    s = _scan(shape=(3, 64, 128), kind=ScanKind.RGB, bit_depth=8)
    with pytest.raises(ScanError, match="pseudo-colour"):
        s.attenuation()


def test_goods_table_longest_prefix_and_unknown_codes():
    t = default_goods_table()
    assert t.category_of("240220") == "tobacco"
    assert t.category_of("4011.10") == "tyres"  # 4011 wins; "40" alone is no category
    assert t.category_of("400100") is None
    assert t.category_of("8471.30") == "machinery"
    assert t.category_of("0803.90") == "fruit_veg"
    assert t.category_of("not a code") is None
    assert t.compatible("machinery", "electronics") and t.compatible("electronics", "machinery")
    assert not t.compatible("tobacco", "textiles")


def test_goods_table_rejects_pairs_of_unknown_categories(tmp_path):
    bad = tmp_path / "goods.yaml"
    bad.write_text("categories:\n  a: {name: A, hs: ['01'], risk: 0.1}\ncompatible:\n  - [a, zzz]\n")
    with pytest.raises(ConfigError, match="unknown categories"):
        load_goods_table(bad)
    bad.write_text("categories: [1, 2")
    with pytest.raises(ConfigError, match="malformed"):
        load_goods_table(bad)


def test_manifest_round_trip_and_categories(tmp_path):
    m = Manifest.from_json(json.dumps({
        "container_id": "MSKU1234565",
        "lines": [{"hs_code": "6109.10", "description": "T-shirts", "quantity": 400, "unit": "cartons"},
                  {"hs_code": "999999"}, {"hs_code": "620342"}],
    }))
    assert m.lines[0].hs_code == "610910"
    cats, unknown = m.categories()
    assert cats == ["textiles"] and unknown == ["999999"]
    p = tmp_path / "m.json"
    m.save(p)
    assert Manifest.load(p) == m
    assert Manifest(container_id="X").declared_empty


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"lines": []}', "container_id"),
        ('{"container_id": "A", "lines": [{"hs_code": "12ab"}]}', "hs_code"),
        ('{"container_id": "A", "lines": [{"hs_code": "2402", "quantity": -1}]}', "quantity"),
        ('{"container_id": "A", "colour": "red"}', "colour"),
    ],
)
def test_manifest_errors_name_the_problem(text, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(text)


def test_manifest_load_names_the_file(tmp_path):
    with pytest.raises(ManifestError, match="missing.json"):
        Manifest.load(tmp_path / "missing.json")


def test_detection_box_must_be_ordered():
    assert Detection(box=(1, 2, 3, 4), category="tyres", score=0.5).area == 4
    with pytest.raises(ValueError):
        Detection(box=(5, 2, 3, 4), category="tyres", score=0.5)
