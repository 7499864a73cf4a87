"""Hypothesis fuzzing of every reader (issue 16, "What to build" 7): mutated PNG, JPEG, TIFF and DICOM bytes
decode or fail with our error types, never anything else; the manifest parser likewise. A few dozen examples
here; `make fuzz` sets XRAY_FUZZ_EXAMPLES higher."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xray.errors import ManifestError, ScanError, ScanReadError
from xray.manifest import Manifest
from xray.scan import Scan, ScanKind
from xray.sources.base import ScanFile
from xray.sources.dicos import write_dicos
from xray.sources.files import decode_cost, decode_scan, write_png16

EXAMPLES = int(os.environ.get("XRAY_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _seeds(tmp: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    grey = rng.random((24, 40))
    tif = io.BytesIO()
    tifffile.imwrite(tif, (grey * 65535).astype(np.uint16), compression="zlib")
    dual = io.BytesIO()
    tifffile.imwrite(dual, (rng.random((2, 24, 40)) * 65535).astype(np.uint16))
    scan = Scan(
        id="d",
        channels=rng.random((2, 24, 40)).astype(np.float32),
        kind=ScanKind.DUAL,
        bit_depth=16,
        energies=("high", "low"),
    )
    return {
        "scan.png": write_png16(tmp / "s.png", grey).read_bytes(),
        "scan8.png": cv2.imencode(".png", (grey * 255).astype(np.uint8))[1].tobytes(),
        "scan.jpg": cv2.imencode(".jpg", (grey * 255).astype(np.uint8))[1].tobytes(),
        "scan.tif": tif.getvalue(),
        "dual.tif": dual.getvalue(),
        "scan.dcm": write_dicos(tmp / "s.dcm", scan).read_bytes(),
    }


SEEDS = _seeds(Path(__import__("tempfile").mkdtemp(prefix="xray-fuzz-")))


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed with a few bytes changed, a piece cut out or repeated, or its end cut off."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "repeat", "truncate", "int"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "int" and pos + 4 <= len(data):  # a size field set to something extreme
            data[pos : pos + 4] = draw(
                st.sampled_from(
                    [
                        b"\xff\xff\xff\xff",
                        b"\x00\x00\x00\x00",
                        b"\x7f\xff\xff\xff",
                        b"\x00\x01\x00\x00",
                        b"\x00\x00\x1f\x40",
                    ]
                )
            )
    return bytes(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_scan_files_fail_only_with_our_errors(name: str) -> None:
    @given(data=mutated(SEEDS[name]))
    @FUZZ
    def check(data: bytes) -> None:
        f = ScanFile(Path(name), data)
        try:
            cost = decode_cost(f)
            scan = decode_scan(f)
        except (ScanReadError, ScanError):
            return
        assert scan.channels.dtype == np.float32 and np.isfinite(scan.channels).all()
        assert cost >= scan.channels.nbytes  # the budget reserved covers what was decoded

    check()


@given(data=st.binary(max_size=2048), name=st.sampled_from(["x.png", "x.tif", "x.jpg", "x.dcm", "x.bin"]))
@FUZZ
def test_random_bytes_fail_only_with_our_errors(data: bytes, name: str) -> None:
    try:
        decode_scan(ScanFile(Path(name), data))
    except (ScanReadError, ScanError):
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_line = st.fixed_dictionaries(
    {"hs_code": st.text(max_size=12) | st.sampled_from(["8703", "０８７０３", "87 03"])},
    optional={
        "quantity": st.floats() | st.integers() | st.text(max_size=5),
        "description": st.text(max_size=20),
        "unit": st.text(max_size=5),
    },
)
_manifest = st.fixed_dictionaries({"container_id": st.text(max_size=70)}, optional={"lines": st.lists(_line)})


@given(value=_json | _manifest, raw=st.binary(max_size=300), pick=st.integers(0, 2))
@FUZZ
def test_manifest_parser_fails_only_with_manifest_error(value: object, raw: bytes, pick: int) -> None:
    import json

    text = json.dumps(value, allow_nan=True) if pick < 2 else None
    data: bytes | str = (text or "").encode() if pick == 0 else text if pick == 1 else raw
    try:
        manifest = Manifest.from_json(data)
    except ManifestError:
        return
    assert manifest.container_id and all(line.hs_code.isascii() for line in manifest.lines)
