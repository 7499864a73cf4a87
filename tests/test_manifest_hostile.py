"""Hostile manifests: every one is refused with a ManifestError that says why (never
RecursionError, ValueError or UnicodeEncodeError, which became 500s in the service)."""

from __future__ import annotations

import json

import pytest

from xray.errors import ManifestError
from xray.manifest import MAX_JSON_DEPTH, Manifest, json_depth, parse_json


def _manifest(**line: object) -> str:
    return json.dumps({"container_id": "MSCU1234565", "lines": [{"hs_code": "8703", **line}]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 960 + "]" * 960, "nested more than"),
        ('{"container_id": "C1", "lines": [' + "[" * 5000 + "]" * 5000 + "]}", "nested more than"),
        (_manifest(quantity=1).replace('"quantity": 1', '"quantity": ' + "9" * 5000), "too long"),
        (_manifest(quantity=1).replace('"quantity": 1', '"quantity": 1.' + "5" * 5000), "too long"),
        (_manifest(quantity=1).replace('"quantity": 1', '"quantity": Infinity'), "not a finite number"),
        (_manifest(quantity=1).replace('"quantity": 1', '"quantity": NaN'), "not a finite number"),
        (_manifest(quantity=1).replace('"quantity": 1', '"quantity": 1e999'), "finite number"),
        (_manifest(description="\ud800"), "surrogate"),
        (json.dumps({"container_id": "C1\u0000", "lines": []}), "control characters"),
        (json.dumps({"container_id": "C1\n2", "lines": []}), "control characters"),
        (_manifest(description="a\u0000b"), "description"),
    ],
)
def test_hostile_manifest_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(text)


@pytest.mark.parametrize("code", ["８７０３", "٨٧٠٣", "²³⁴⁵", "৮৭০৩"])
def test_hs_codes_are_ascii_digits_only(code: str) -> None:
    with pytest.raises(ManifestError, match="ASCII digits"):
        Manifest.from_json(json.dumps({"container_id": "C1", "lines": [{"hs_code": code}]}))


def test_non_utf8_bytes_are_refused_without_echo() -> None:
    with pytest.raises(ManifestError, match="not UTF-8") as e:
        Manifest.from_json(b'{"container_id": "\xff\xfe"}')
    assert "\xff" not in str(e.value)


def test_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth('{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert json_depth(r'{"a": "\"[[[["}') == 1
    deep_text = json.dumps({"container_id": "C1", "lines": [], "x": "[" * (MAX_JSON_DEPTH * 3)})
    assert json_depth(deep_text) == 2  # the object and its empty list


def test_ordinary_manifests_still_parse() -> None:
    m = Manifest.from_json(_manifest(description="Cars, used — 3 units", quantity=3, weight_kg=4200.5))
    assert m.lines[0].hs_code == "8703" and m.lines[0].quantity == 3 and m.lines[0].weight_kg == 4200.5
    assert parse_json("[1, 2.5, -3e2]", what="list") == [1, 2.5, -300.0]
