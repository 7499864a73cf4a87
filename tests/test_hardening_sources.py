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


def _tiff_with_next_ifd(next_offsets: list[int] | None, pages: int = 1) -> bytes:
    """A small classic little-endian TIFF whose IFDs' next-IFD offsets are overwritten (None: as written)."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        for _ in range(pages):
            w.write(np.zeros((24, 40), np.uint16), compression="zlib", metadata=None)
    data = bytearray(buf.getvalue())
    offset, links = struct.unpack("<I", data[4:8])[0], []
    while offset:
        (count,) = struct.unpack("<H", data[offset : offset + 2])
        link = offset + 2 + 12 * count
        links.append((offset, link))
        offset = struct.unpack("<I", data[link : link + 4])[0]
    for (_, link), target in zip(links, next_offsets or []):
        data[link : link + 4] = struct.pack("<I", target)
    return bytes(data)


@pytest.mark.parametrize("reader", [decode_scan, decode_cost])
def test_tiff_whose_page_chain_loops_is_refused_at_once(reader) -> None:
    """Fuzzing found a 3 KB TIFF whose next-IFD offsets point back (8 -> 12 -> 8 ...): tifffile then
    walks pages for ever while logging two warnings a page. Both readers must refuse it."""
    plain = _tiff_with_next_ifd(None, pages=2)
    first = struct.unpack("<I", plain[4:8])[0]
    (count,) = struct.unpack("<H", plain[first : first + 2])
    second = struct.unpack("<I", plain[first + 2 + 12 * count : first + 6 + 12 * count])[0]
    looped = _tiff_with_next_ifd([second, first], pages=2)  # page 2 names page 1 as the next one
    with pytest.raises(ScanReadError, match="loops back"):
        reader(ScanFile(Path("loop.tif"), looped))


def test_tiff_with_too_many_pages_is_refused_and_two_pages_still_read() -> None:
    with pytest.raises(ScanReadError, match="more than 16 pages"):
        decode_scan(ScanFile(Path("many.tif"), _tiff_with_next_ifd(None, pages=17)))
    pair = decode_scan(ScanFile(Path("pair.tif"), _tiff_with_next_ifd(None, pages=2)))
    assert pair.channels.shape[0] == 2


# The 454-byte TIFF fuzzing found (a mutated 16-bit zlib TIFF): its pages at offsets 8 and 12 name
# each other as the next one, and tifffile walked them for ever, logging two warnings a page.
FUZZED_LOOP_TIFF = "SUkqAAgAAAAOAAABBAABAAAAAAAAAAAAAAAoAAAAAQEEAAEAAAAYAAAAAgEDAAEAAAAQAAAAAwEDAAEAAAAIAAAABgEDAAEAAAABAAAADgECABQAAAC2AAAAEQEEAAEAAAAAAQAAFQEDAAEAAAABAAAAFgEEAAEAAAAYAAAAFwEEAAEAAACLBwAAGgEFAAEAAADaAAAAGwEFAAEAAADiAAAAKAEDAAEAAAABAAAAMQECAAwAAADqAAAAAAAAAHsic2hhcGUiOiBbMjQsIDQwXX0AAAAAAAAAAAAAAAAAAAAAAAEAAAABAAAAAQAAAAEAAAB0aWZmZmlsZS5weQAAAAAAAAAAAAAAeJwBgAd/+A+jEEV9CjsEMdCp6Uubv7oqi1/v2tCzAH3bmQjJuvcs+NycirlMNGw/B9AfrautpYmdOGJI/xf7fq+Dpj2wj2OVIrK4fYZrT198tOMc75hbT5JlUiOYgVZAZOjjJjqIn4EVJ9V+yUc9YOD+DgtWeCZIc9vLCztRDZBn0TI7F5CUd0wHrBMzLfF3XQEbDKFZ7bxwX/T4f9tsxZ69/u3yoLpq7cn3wwMW3S77CvUVJv340eOG0uB6fA=="


def test_the_fuzzed_looping_tiff_is_refused_within_seconds() -> None:
    import subprocess
    import sys

    code = (
        "import base64, logging, sys; from pathlib import Path; logging.disable(logging.CRITICAL)\n"
        "from xray.errors import ScanReadError; from xray.sources.base import ScanFile\n"
        "from xray.sources.files import decode_cost, decode_scan\n"
        "f = ScanFile(Path('fuzzed.tif'), base64.b64decode(sys.argv[1]))\n"
        "for reader in (decode_cost, decode_scan):\n"
        "    try:\n"
        "        reader(f)\n"
        "    except ScanReadError as e:\n"
        "        print(e)\n"
    )
    # In a child process: on the old code this never returns, and the timeout fails the test cleanly.
    r = subprocess.run([sys.executable, "-c", code, FUZZED_LOOP_TIFF], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.count("loops back") == 2, r.stdout
