"""Memory bombs within the size limits (issue 16, "Why" 3 and 7): tiny files whose headers claim far more
pixels than their bytes hold are refused from the header, the decoder never called."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit

from xray.errors import ScanReadError
from xray.scan import Scan, ScanKind
from xray.sources import dicos
from xray.sources.base import ScanFile
from xray.sources.dicos import write_dicos
from xray.sources.files import decode_cost, decode_scan, write_png16


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of zeros: deflate packs 8000 x 8000 of them in about 62 KB."""
    raw = zlib.compress(b"\0" * ((width + 1) * height), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", raw)
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of baseline JPEG (complete: SOI ... SOS ... EOI) whose frame claims width x height."""
    good = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()
    data = bytearray(good)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every pixel decoder, replaced by one that notes the call and fails: the refusal must come from the header.

    (The failure says nothing of bombs, so a reader that wraps it in its own error does not pass for refusing.)"""
    calls: list[str] = []

    def noting(name: str):
        def refuse(*_args: object, **_kw: object) -> None:
            calls.append(name)
            raise RuntimeError(f"{name} called")

        return refuse

    monkeypatch.setattr(cv2, "imdecode", noting("cv2.imdecode"))
    monkeypatch.setattr(cv2, "imdecodemulti", noting("cv2.imdecodemulti"))
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", noting("tifffile asarray"))
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(noting("pixel_array")))
    return calls


def test_png_of_8000_squared_zeros_is_refused_without_decoding(no_decoder: list[str]) -> None:
    data = png_of_zeros(8000, 8000)
    assert len(data) < 100_000  # tiny, far within the upload limit
    f = ScanFile(Path("zeros.png"), data)
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_scan(f)
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_cost(f)  # the service's budget check refuses it the same way
    assert no_decoder == []


def test_335_byte_jpeg_claiming_8000_squared_is_refused_without_decoding(no_decoder: list[str]) -> None:
    data = jpeg_claiming(8000, 8000)
    assert len(data) < 1000
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_scan(ScanFile(Path("grey.jpg"), data))
    assert no_decoder == []


def test_compressed_tiff_of_zeros_is_refused_without_decoding(tmp_path: Path, no_decoder: list[str]) -> None:
    path = tmp_path / "zeros.tif"
    tifffile.imwrite(path, np.zeros((4000, 4000), np.uint16), compression="zlib")
    assert path.stat().st_size < 200_000
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_scan(ScanFile.load(path))
    assert no_decoder == []


def _dicos_bytes(tmp_path: Path, side: int) -> bytes:
    scan = Scan(id="d", channels=np.zeros((1, side, side), np.float32), kind=ScanKind.SINGLE, bit_depth=16)
    return write_dicos(tmp_path / "d.dcm", scan).read_bytes()


def test_deflated_dicom_is_refused_before_pydicom_inflates_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = pydicom.dcmread(io.BytesIO(_dicos_bytes(tmp_path, 3000)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    assert len(data) < 100_000  # 18 MB of pixels deflated

    def no_reading(*_args: object, **_kw: object) -> None:
        raise AssertionError("pydicom inflated the whole dataset before any size check")

    monkeypatch.setattr(dicos.pydicom, "dcmread", no_reading)
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_scan(ScanFile(Path("deflated.dcm"), data))


def test_encapsulated_dicom_claiming_more_than_it_holds_is_refused_before_pixel_array(
    tmp_path: Path, no_decoder: list[str]
) -> None:
    ds = pydicom.dcmread(io.BytesIO(_dicos_bytes(tmp_path, 16)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows = ds.Columns = 8000
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = pydicom.encaps.encapsulate([jpeg_claiming(8000, 8000)])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ScanReadError, match="decompression bomb"):
        decode_scan(ScanFile(Path("encapsulated.dcm"), out.getvalue()))
    assert no_decoder == []


def test_png_with_trailing_bytes_is_refused_not_stored(tmp_path: Path) -> None:
    good = write_png16(tmp_path / "g.png", np.full((32, 32), 0.5)).read_bytes()
    assert decode_scan(ScanFile(Path("g.png"), good)).channels.shape == (1, 32, 32)
    with pytest.raises(ScanReadError, match="after the PNG's IEND"):
        decode_scan(ScanFile(Path("padded.png"), good + b"\0" * 100_000))


def test_decode_cost_of_real_scans_is_what_decoding_takes(tmp_path: Path) -> None:
    good = write_png16(tmp_path / "g.png", np.random.default_rng(0).random((256, 512))).read_bytes()
    cost = decode_cost(ScanFile(Path("g.png"), good))
    assert 256 * 512 * 4 <= cost <= 256 * 512 * 16  # float32 plus the decoder's buffers, not more
