"""Reading scan files at full bit depth, and refusing bad ones with a clear ScanReadError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from pixels import H, W, as_u16, levels16

from xray.errors import ScanError, ScanReadError
from xray.scan import MAX_SIDE, Scan, ScanKind
from xray.sources.files import (
    read_scan,
    split_energy_suffix,
    write_png16,
    write_tiff,
)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims a width x height 16-bit image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + png_chunk(b"IEND", b"")
    )


# -- full bit depth round trips --------------------------------------------------------------


def test_png16_round_trip_is_exact(tmp_path: Path) -> None:
    values = levels16()
    path = write_png16(tmp_path / "s001.png", values / 65535.0)
    scan = read_scan(path)
    assert scan.kind is ScanKind.SINGLE and scan.bit_depth == 16
    assert scan.channels.dtype == np.float32 and scan.channels.shape == (1, H, W)
    np.testing.assert_array_equal(as_u16(scan.channels[0]), values)
    assert scan.id == "s001"
    assert scan.meta["paths"] == [str(path)] and scan.meta["formats"] == ["png"]


def test_png16_written_by_cv2_keeps_every_bit(tmp_path: Path) -> None:
    values = levels16(1)
    cv2.imwrite(str(tmp_path / "a.png"), values)
    scan = read_scan(tmp_path / "a.png")
    np.testing.assert_array_equal(as_u16(scan.channels[0]), values)
    assert scan.channels.max() == 1.0 and scan.channels.min() == 0.0


def test_png8_is_single_energy_8_bit(tmp_path: Path) -> None:
    values = (levels16() >> 8).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), values)
    scan = read_scan(tmp_path / "a.png")
    assert scan.kind is ScanKind.SINGLE and scan.bit_depth == 8
    np.testing.assert_array_equal(np.round(scan.channels[0] * 255).astype(np.uint8), values)


def test_png16_with_three_channels_is_rgb_in_rgb_order(tmp_path: Path) -> None:
    rgb = np.stack([levels16(1), levels16(2), levels16(3)]) / 65535.0
    scan = read_scan(write_png16(tmp_path / "pseudo.png", rgb))
    assert scan.kind is ScanKind.RGB and scan.bit_depth == 16
    for c in range(3):
        np.testing.assert_array_equal(as_u16(scan.channels[c]), as_u16(rgb[c]))


def test_png8_colour_is_converted_from_bgr(tmp_path: Path) -> None:
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[..., 2] = 255  # red in cv2's BGR order
    bgr[..., 0] = 10
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    scan = read_scan(tmp_path / "red.png")
    assert scan.kind is ScanKind.RGB and scan.bit_depth == 8
    assert scan.channels[0].min() == 1.0  # red first
    np.testing.assert_allclose(scan.channels[2], 10 / 255.0)


@pytest.mark.parametrize("dtype, bits", [(np.uint16, 16), (np.uint8, 8)])
def test_tiff_single_channel_round_trip(tmp_path: Path, dtype: type, bits: int) -> None:
    values = levels16() if bits == 16 else (levels16() >> 8).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", values)
    scan = read_scan(tmp_path / "a.tif")
    assert scan.kind is ScanKind.SINGLE and scan.bit_depth == bits
    np.testing.assert_array_equal(np.round(scan.channels[0] * (2**bits - 1)).astype(dtype), values)


def test_tiff_float32_transmission_is_kept(tmp_path: Path) -> None:
    values = (levels16() / 65535.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tiff", values)
    scan = read_scan(tmp_path / "a.tiff")
    np.testing.assert_array_equal(scan.channels[0], values)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_two_channel_tiff_is_dual_energy_high_first(tmp_path: Path, layout: str) -> None:
    high, low = levels16(1), levels16(2)
    if layout == "chw":
        tifffile.imwrite(tmp_path / "d.tif", np.stack([high, low]))
    else:
        tifffile.imwrite(
            tmp_path / "d.tif", np.stack([high, low], axis=-1), photometric="minisblack", planarconfig="contig"
        )
    scan = read_scan(tmp_path / "d.tif")
    assert scan.kind is ScanKind.DUAL and scan.bit_depth == 16
    np.testing.assert_array_equal(as_u16(scan.channels[0]), high)
    np.testing.assert_array_equal(as_u16(scan.channels[1]), low)


@pytest.mark.parametrize("kind", [ScanKind.SINGLE, ScanKind.DUAL, ScanKind.RGB])
def test_write_tiff_round_trips_channels_spacing_and_energies(tmp_path: Path, kind: ScanKind) -> None:
    n = {ScanKind.SINGLE: 1, ScanKind.DUAL: 2, ScanKind.RGB: 3}[kind]
    values = np.stack([levels16(i) for i in range(n)])
    energies = {ScanKind.SINGLE: ("6MV",), ScanKind.DUAL: ("6MV", "4MV"), ScanKind.RGB: ()}[kind]
    scan = Scan(
        id="x", channels=(values / 65535.0).astype(np.float32), kind=kind, pixel_mm=(3.5, 4.25), energies=energies
    )
    back = read_scan(write_tiff(tmp_path / "x.tif", scan))
    assert back.kind is kind and back.pixel_mm == (3.5, 4.25) and back.energies == energies
    np.testing.assert_array_equal(as_u16(back.channels), values)


def test_jpeg_grey_and_colour_read_approximately(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, W), (H, 1)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.jpg"), ramp, [cv2.IMWRITE_JPEG_QUALITY, 95])
    grey = read_scan(tmp_path / "g.jpg")
    assert grey.kind is ScanKind.SINGLE and grey.bit_depth == 8 and grey.channels.shape == (1, H, W)
    assert np.abs(grey.channels[0] - ramp / 255.0).mean() < 0.02
    # a red ramp over a little green (black to red alone is the first third of the HOT palette: read back)
    bgr = np.dstack([np.zeros_like(ramp), np.full_like(ramp, 60), ramp])
    cv2.imwrite(str(tmp_path / "c.jpeg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    colour = read_scan(tmp_path / "c.jpeg")
    assert colour.kind is ScanKind.RGB and colour.channels.shape == (3, H, W)
    assert np.abs(colour.channels[0] - ramp / 255.0).mean() < 0.05
    assert colour.channels[2].mean() < 0.05


def test_high_and_low_files_make_a_dual_scan(tmp_path: Path) -> None:
    high, low = levels16(1), levels16(2)
    write_png16(tmp_path / "s7_high.png", high / 65535.0)
    write_png16(tmp_path / "s7_low.png", low / 65535.0)
    scan = read_scan(tmp_path / "s7_high.png", tmp_path / "s7_low.png", pixel_mm=(4.0, 4.0))
    assert scan.kind is ScanKind.DUAL and scan.id == "s7" and scan.energies == ("high", "low")
    assert scan.pixel_mm == (4.0, 4.0)
    np.testing.assert_array_equal(as_u16(scan.channels), np.stack([high, low]))
    assert scan.meta["paths"] == [str(tmp_path / "s7_high.png"), str(tmp_path / "s7_low.png")]


def test_format_is_chosen_by_content_not_suffix(tmp_path: Path) -> None:
    values = levels16()
    write_png16(tmp_path / "really_png.tif", values / 65535.0)
    tifffile.imwrite(tmp_path / "really_tiff.png", values)
    for name, fmt in (("really_png.tif", "png"), ("really_tiff.png", "tiff")):
        scan = read_scan(tmp_path / name, scan_id="given")
        assert scan.meta["formats"] == [fmt] and scan.id == "given"
        np.testing.assert_array_equal(as_u16(scan.channels[0]), values)


@pytest.mark.parametrize(
    "stem, expected",
    [
        ("s1_high", ("s1", "high")),
        ("s1_LE", ("s1", "low")),
        ("a_b_h", ("a_b", "high")),
        ("s1", ("s1", None)),
        ("_low", ("_low", None)),
        ("s1_lower", ("s1_lower", None)),
    ],
)
def test_energy_suffixes(stem: str, expected: tuple[str, str | None]) -> None:
    assert split_energy_suffix(stem) == expected


# -- bad input ---------------------------------------------------------------------------------


def _good_png(tmp_path: Path) -> bytes:
    return write_png16(tmp_path / "good.png", levels16() / 65535.0).read_bytes()


def _tiff_claiming(tmp_path: Path, width: int, height: int) -> bytes:
    """A small TIFF whose ImageWidth/ImageLength tags are rewritten to claim a huge image."""
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, np.zeros((H, W), np.uint16), metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        entries = [(tags["ImageWidth"].offset, 256, width), (tags["ImageLength"].offset, 257, height)]
    for offset, code, value in entries:
        struct.pack_into("<HHII", data, offset, code, 4, 1, value)  # tag, LONG, count 1, value
    return bytes(data)


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((H, W), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _tiff_bytes(values: np.ndarray, tmp_path: Path, **options: str) -> bytes:
    tifffile.imwrite(tmp_path / "t.tif", values, **options)
    return (tmp_path / "t.tif").read_bytes()


BAD_FILES = {
    "zero-byte file": ("scan.png", lambda t: b"", "empty"),
    "text renamed .png": ("scan.png", lambda t: b"scanner log: all fine\n" * 4, "not PNG"),
    "text renamed .tif": ("scan.tif", lambda t: b"hello", "not TIFF"),
    "unknown suffix": ("scan.bin", lambda t: b"\x00\x01\x02\x03" * 40, "unknown file format"),
    "truncated PNG": ("scan.png", lambda t: _good_png(t)[: len(_good_png(t)) // 2], "truncated PNG"),
    "PNG cut before IEND": ("scan.png", lambda t: _good_png(t)[:-6], "truncated PNG"),
    "PNG header only": ("scan.png", lambda t: _good_png(t)[:20], "no IHDR"),
    "PNG with corrupt data": (
        "scan.png",
        lambda t: _good_png(t)[:33] + png_chunk(b"IDAT", b"garbage" * 20) + png_chunk(b"IEND", b""),
        "corrupt",
    ),
    "PNG bomb, side": ("scan.png", lambda t: png_claiming(100_000, 100_000), "decompression bomb"),
    "PNG bomb, pixels": ("scan.png", lambda t: png_claiming(20_000, 20_000), "decompression bomb"),
    "too small": ("scan.png", lambda t: png_claiming(4, 4), "absurd image size"),
    "truncated TIFF": ("scan.tif", lambda t: _tiff_bytes(levels16(), t)[:3000], "truncated TIFF"),
    "TIFF bomb": ("scan.tif", lambda t: _tiff_claiming(t, 100_000, 100_000), "decompression bomb"),
    "int32 TIFF": ("scan.tif", lambda t: _tiff_bytes(levels16().astype(np.int32), t), "int32"),
    "float64 TIFF": ("scan.tif", lambda t: _tiff_bytes(levels16() / 65535.0, t), "float64"),
    "float32 TIFF above 1": (
        "scan.tif",
        lambda t: _tiff_bytes((levels16() / 30000.0).astype(np.float32), t),
        "expected transmission in [0, 1]",
    ),
    "float32 TIFF with NaN": ("scan.tif", lambda t: _tiff_bytes(np.full((H, W), np.nan, np.float32), t), "NaN"),
    "three-page TIFF": (
        "scan.tif",
        lambda t: _tiff_bytes(np.stack([levels16()] * 3), t, photometric="minisblack"),
        "shape (3, 48, 64)",
    ),
    "truncated JPEG": (
        "scan.jpg",
        lambda t: cv2.imencode(".jpg", levels16().astype(np.uint8))[1].tobytes()[:900],
        "truncated JPEG",
    ),
    "JPEG bomb": ("scan.jpg", lambda t: _jpeg_claiming(60_000, 60_000), "decompression bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_scan_read_error_naming_file_and_reason(tmp_path: Path, case: str) -> None:
    name, make, reason = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    with pytest.raises(ScanReadError) as info:
        read_scan(path)
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None or not isinstance(info.value.__cause__, ScanReadError)


def test_bomb_is_refused_from_the_header_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object) -> None:
        raise AssertionError("decoder called on a decompression bomb")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(MAX_SIDE + 1, 100))
    with pytest.raises(ScanReadError, match="decompression bomb"):
        read_scan(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScanReadError, match="file not found") as info:
        read_scan(tmp_path / "nope.png")
    assert info.value.path == str(tmp_path / "nope.png")


def test_tiff_without_a_readable_page(tmp_path: Path) -> None:
    path = tmp_path / "t.tif"
    data = bytearray(_tiff_bytes(levels16(), tmp_path))
    data[4:8] = struct.pack("<I", len(data) + 1000)  # first IFD offset beyond the end
    path.write_bytes(bytes(data))
    with pytest.raises(ScanReadError, match="corrupt TIFF") as info:
        read_scan(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("pages", [1, 2])
def test_lzw_tiff_reads_without_optional_codecs(tmp_path: Path, pages: int) -> None:
    Image = pytest.importorskip("PIL.Image")  # an independent LZW writer (tifffile needs imagecodecs)
    values = [levels16(1), levels16(2)][:pages]
    images = [Image.fromarray(v) for v in values]
    images[0].save(tmp_path / "lzw.tif", compression="tiff_lzw", save_all=True, append_images=images[1:])
    scan = read_scan(tmp_path / "lzw.tif")
    assert scan.kind is (ScanKind.SINGLE if pages == 1 else ScanKind.DUAL)
    np.testing.assert_array_equal(as_u16(scan.channels), np.stack(values))


def _patched_tiff(tmp_path: Path, tag: str, code: int, value: int) -> Path:
    """A 16-bit TIFF with one SHORT tag rewritten."""
    data = bytearray(_tiff_bytes(levels16(), tmp_path, photometric="minisblack"))
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        offset = tif.pages[0].tags[tag].offset
    struct.pack_into("<HHII", data, offset, code, 3, 1, value)
    path = tmp_path / "patched.tif"
    path.write_bytes(bytes(data))
    return path


def test_tiff_library_exception_is_wrapped_with_its_cause(tmp_path: Path) -> None:
    path = _patched_tiff(tmp_path, "Compression", 259, 34712)  # JPEG 2000: needs a codec plugin
    with pytest.raises(ScanReadError, match="cannot decode TIFF") as info:
        read_scan(path)
    assert info.value.path == str(path)
    assert info.value.__cause__ is not None and not isinstance(info.value.__cause__, ScanReadError)


def test_tiff_with_fewer_bits_per_sample_scales_to_its_own_maximum(tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs")  # tifffile unpacks 12-bit samples with it
    path = _patched_tiff(tmp_path, "BitsPerSample", 258, 12)  # now read as packed 12-bit samples
    stored = tifffile.imread(path)
    scan = read_scan(path)
    assert scan.bit_depth == 16 and stored.max() <= 4095
    np.testing.assert_array_equal(np.round(scan.channels[0] * 4095).astype(np.uint16), stored)


def test_high_and_low_of_different_sizes_do_not_pair(tmp_path: Path) -> None:
    write_png16(tmp_path / "s_high.png", levels16() / 65535.0)
    write_png16(tmp_path / "s_low.png", levels16()[:40] / 65535.0)
    with pytest.raises(ScanReadError) as info:
        read_scan(tmp_path / "s_high.png", tmp_path / "s_low.png")
    assert info.value.path == str(tmp_path / "s_low.png")
    assert "64x40" in info.value.reason and "64x48" in info.value.reason


def test_pseudo_colour_image_cannot_be_an_energy_channel(tmp_path: Path) -> None:
    write_png16(tmp_path / "rgb.png", np.stack([levels16(1), levels16(2), levels16(3)]) / 65535.0)
    write_png16(tmp_path / "low.png", levels16() / 65535.0)
    with pytest.raises(ScanReadError, match="rgb image") as info:
        read_scan(tmp_path / "rgb.png", tmp_path / "low.png")
    assert info.value.path == str(tmp_path / "rgb.png")


def _grey_scene() -> np.ndarray:
    """A grey 8-bit export: dark goods in a brighter hold, a frame, noise."""
    rng = np.random.default_rng(0)
    img = np.full((H, W), 200, np.uint8)
    img[10:40, 8:56] = rng.integers(5, 60, (30, 48))
    img[:, :3] = 30
    return img


def test_a_grey_export_saved_as_colour_is_read_as_the_grey_scan_it_is(tmp_path: Path) -> None:
    grey = _grey_scene()
    cv2.imwrite(str(tmp_path / "g.jpg"), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    scan = read_scan(tmp_path / "g.jpg")
    assert scan.kind is ScanKind.SINGLE and scan.channels.shape == (1, H, W) and scan.bit_depth == 8
    assert scan.meta["grey_from_rgb"] is True
    assert np.abs(scan.channels[0] - grey / 255.0).mean() < 0.02
    # burned-in coloured text or a marker over a small share of it does not make it pseudo-colour
    marked = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    marked[2:4, 20:60] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "m.png"), marked)
    assert read_scan(tmp_path / "m.png").kind is ScanKind.SINGLE
    # a JET rendering of the same scene is read back through the palette, not as its luminance
    cv2.imwrite(str(tmp_path / "jet.png"), cv2.applyColorMap(grey, cv2.COLORMAP_JET))
    jet = read_scan(tmp_path / "jet.png")
    assert jet.kind is ScanKind.SINGLE and jet.channels.shape == (1, H, W) and jet.meta["palette"] == "jet"
    assert "grey_from_rgb" not in jet.meta
    assert np.abs(jet.channels[0] - grey / 255.0).max() <= 1 / 255 + 1e-6
    # and a high/low pair of grey images saved as colour is a dual-energy scan
    cv2.imwrite(str(tmp_path / "p_high.png"), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(tmp_path / "p_low.png"), cv2.cvtColor(grey // 2, cv2.COLOR_GRAY2BGR))
    pair = read_scan(tmp_path / "p_high.png", tmp_path / "p_low.png")
    assert pair.kind is ScanKind.DUAL and pair.channels.shape == (2, H, W)


def _read_pair_into(queue, high: Path, low: Path) -> None:  # runs in a forked child
    queue.put(read_scan(high, low).channels.shape)


def test_a_forked_child_reads_a_pair_after_its_parent_did(tmp_path: Path) -> None:
    # The pair is decoded on a thread pool. A child forked after the parent used it (a
    # DataLoader worker, a pre-fork server) inherits the pool without its threads and hung
    # on its first pair before the pool was made per process.
    import multiprocessing

    high, low = tmp_path / "a_high.png", tmp_path / "a_low.png"
    write_png16(high, levels16(1) / 65535.0)
    write_png16(low, levels16(2) / 65535.0)
    assert read_scan(high, low).channels.shape == (2, H, W)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_pair_into, args=(queue, high, low))
    child.start()
    child.join(30)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
    assert queue.get(timeout=5) == (2, H, W)


def test_png16_deflate_levels_keep_every_value(tmp_path: Path) -> None:
    values = levels16()
    values[:, : W // 2] = np.arange(W // 2, dtype=np.uint16) * 97  # a smooth half that deflate can pack
    stored = write_png16(tmp_path / "stored.png", values / 65535.0, level=0)
    packed = write_png16(tmp_path / "packed.png", values / 65535.0, level=9)
    for path in (stored, packed):
        np.testing.assert_array_equal(as_u16(read_scan(path).channels[0]), values)
    assert stored.stat().st_size > packed.stat().st_size
    with pytest.raises(ScanError, match="0-9"):
        write_png16(tmp_path / "bad.png", values / 65535.0, level=10)


def grey_png(samples: np.ndarray, depth: int, *extra: bytes) -> bytes:
    """A grey PNG of `samples` at `depth` bits, rows unfiltered, with `extra` chunks before the data."""
    if depth == 16:
        rows = [b"\0" + row.astype(">u2").tobytes() for row in samples]
    else:
        bits = np.unpackbits(samples.astype(np.uint8)[..., None], axis=-1)[..., 8 - depth :]
        rows = [b"\0" + np.packbits(row.ravel()).tobytes() for row in bits]
    h, w = samples.shape
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
        + b"".join(extra)
        + png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("depth", "transparent"),
    [(16, False), (8, False), (16, True), (8, True), (4, False)],
    ids=["16-bit", "8-bit", "16-bit with tRNS", "8-bit with tRNS", "4-bit"],
)
def test_grey_png_reads_as_its_samples(tmp_path: Path, depth: int, transparent: bool) -> None:
    # A transparency chunk must not turn the scan into grey + alpha (some decoders add the
    # alpha channel), and 4-bit samples scale to their own maximum.
    top = (1 << depth) - 1
    samples = np.random.default_rng(depth).integers(0, top + 1, (H, W))
    trns = (png_chunk(b"tRNS", struct.pack(">H", 7)),) if transparent else ()
    path = tmp_path / "grey.png"
    path.write_bytes(grey_png(samples, depth, *trns))
    scan = read_scan(path)
    assert scan.kind is ScanKind.SINGLE and scan.channels.shape == (1, H, W)
    assert scan.bit_depth == (16 if depth == 16 else 8)
    np.testing.assert_allclose(scan.channels[0], samples / top, atol=1e-6)


def test_corrupt_grey_png_data_is_a_scan_read_error_naming_the_file(tmp_path: Path) -> None:
    good = bytearray(write_png16(tmp_path / "g.png", levels16() / 65535.0).read_bytes())
    idat = good.find(b"IDAT") + 4
    good[idat + 20 : idat + 60] = b"\xff" * 40  # inside the deflate stream; the chunk CRC now fails too
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(good))
    with pytest.raises(ScanReadError, match="corrupt") as info:
        read_scan(path)
    assert info.value.path == str(path)
