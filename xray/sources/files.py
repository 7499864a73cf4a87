"""Scan files at full bit depth: PNG (8/16-bit), TIFF, JPEG and DICOS/DICOM.

The format is chosen by content (magic bytes), not by suffix. Image sizes are
checked from the header before anything is decoded, so a tiny file claiming a
100000 x 100000 image is refused without allocating it. Every failure, whatever
library raised it, becomes a `ScanReadError` naming the file and the reason.

Pixel values map to [0, 1]: uint16 / 65535, uint8 / 255, float32 (TIFF) as is.
One grey image is a single-energy scan; two (a 2-channel TIFF, a 2-frame DICOS,
or a high file plus `low=`) a dual-energy scan; three channels a pseudo-colour
(RGB) rendering, unless they are grey (a grey export saved as RGB: read as one grey channel).
"""

from __future__ import annotations

import io
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from xray.errors import ScanError, ScanReadError
from xray.scan import Scan, ScanKind
from xray.sources.base import (
    MAX_FILE_BYTES,
    PNG_MAGIC,
    DecodedImage,
    ScanFile,
    check_compression,
    check_image_size,
    decoded_cost,
)
from xray.sources.dicos import decode_dicos, dicos_samples

__all__ = [
    "MAX_FILE_BYTES",
    "SCAN_SUFFIXES",
    "ScanFile",
    "decode_cost",
    "decode_scan",
    "read_scan",
    "write_png16",
    "write_tiff",
]

_decoder: ThreadPoolExecutor | None = None
_decoder_lock = threading.Lock()


def _decoder_pool() -> ThreadPoolExecutor:
    """The process's decode threads, made on first use."""
    global _decoder
    with _decoder_lock:
        if _decoder is None:
            _decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xray-decode")
        return _decoder


def _forget_decoder_pool() -> None:
    # A forked child (a DataLoader worker, a pre-fork server) inherits the pool but not its
    # threads: work submitted to it would wait for ever. The child makes its own.
    global _decoder, _decoder_lock
    _decoder, _decoder_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_decoder_pool)

# Suffixes that name scan files; anything else in a folder (".part", ".tmp") is not one.
SCAN_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dcm", ".dicos"})
# Name suffixes of energy channels: <id>_high.png, <id>_he.png, <id>_h.png, ...
ENERGY_SUFFIXES = {"high": "high", "he": "high", "h": "high", "low": "low", "le": "low", "l": "low"}


def split_energy_suffix(stem: str) -> tuple[str, str | None]:
    """Split a file stem into (scan id, energy): "s01_high" -> ("s01", "high"), "s01" -> ("s01", None)."""
    base, sep, tail = stem.rpartition("_")
    energy = ENERGY_SUFFIXES.get(tail.lower()) if sep and base else None
    return (base, energy) if energy else (stem, None)


def read_scan(
    path: str | Path,
    low: str | Path | None = None,
    *,
    scan_id: str | None = None,
    pixel_mm: tuple[float, float] | None = None,
) -> Scan:
    """Read a scan file (or a high/low energy pair of files) at full bit depth.

    Args:
        path: The scan file, or its high-energy image when `low` is given.
        low: The low-energy image; the two must have the same size.
        scan_id: Scan id; defaults to the file stem without its energy suffix.
        pixel_mm: Pixel spacing (row, column) in mm, overriding what the file says.

    Raises:
        ScanReadError: any file that is missing, truncated, not a supported format, of an
            unsupported pixel type or absurd size, or two files that do not pair.
    """
    high_file = ScanFile.load(path)
    low_file = ScanFile.load(low) if low is not None else None
    return decode_scan(high_file, low_file, scan_id=scan_id, pixel_mm=pixel_mm)


def decode_scan(
    high: ScanFile,
    low: ScanFile | None = None,
    *,
    scan_id: str | None = None,
    pixel_mm: tuple[float, float] | None = None,
    energies: tuple[str, ...] | None = None,
) -> Scan:
    """Decode already-read files into a scan (see `read_scan`).

    `energies` labels the channels when the files do not (e.g. ("low",) for a lone
    low-energy image); labels stored in the file win.
    """
    base_id = scan_id or split_energy_suffix(high.path.stem)[0]
    files = [high]
    if low is None:
        image = _decode(high).as_grey_if_grey_rendering()
    else:
        # Two grey PNGs of one size (what scanners export) decode straight into the scan's
        # channels: no concatenation of two full-resolution images afterwards.
        channels = _pair_buffer(high, low)
        # The codecs release the GIL: decoding both energies at once halves the wait.
        future = _decoder_pool().submit(_decode, low, None if channels is None else channels[1:])
        try:
            first = _decode(high, None if channels is None else channels[:1])
        finally:
            second = future.result()
        image = _pair(high, first.as_grey_if_grey_rendering(), low, second.as_grey_if_grey_rendering(), channels)
        files.append(low)
    # Labels stored in the files win, then the caller's, then the plain names of a pair.
    labels = image.energies or energies or (("high", "low") if low is not None else ())
    if len(labels) != image.channels.shape[0] or image.kind is ScanKind.RGB:
        labels = ()
    return image.to_scan(
        high.path,
        scan_id=base_id,
        pixel_mm=pixel_mm,
        energies=tuple(labels),
        meta={"paths": [str(f.path) for f in files], "formats": [f.format for f in files]},
    )


def _pair_buffer(high: ScanFile, low: ScanFile) -> np.ndarray | None:
    """(2, H, W) float32 for the channels of a pair of grey 8/16-bit PNGs of one size whose
    headers pass every check; None otherwise (the pair then takes the general path, which
    reports what is wrong)."""
    if high.format != "png" or low.format != "png":
        return None
    try:
        heads = [_png_header(high), _png_header(low)]
    except ScanReadError:
        return None
    if heads[0] != heads[1] or heads[0][2] != 1:
        return None
    width, height = heads[0][:2]
    return np.empty((2, height, width), np.float32)


def _pair(
    high: ScanFile, hi: DecodedImage, low: ScanFile, lo: DecodedImage, channels: np.ndarray | None = None
) -> DecodedImage:
    for f, image in ((high, hi), (low, lo)):
        if image.kind is not ScanKind.SINGLE:
            raise ScanReadError(
                f.path, f"is a {image.kind.value} image; a high/low energy pair needs two single-energy images"
            )
    if hi.channels.shape != lo.channels.shape:
        (_, h1, w1), (_, h2, w2) = hi.channels.shape, lo.channels.shape
        raise ScanReadError(
            low.path, f"low-energy image is {w2}x{h2} pixels but the high-energy image {high.path} is {w1}x{h1}"
        )
    if channels is None or not all(np.shares_memory(i.channels, channels) for i in (hi, lo)):
        channels = np.concatenate([hi.channels, lo.channels])
    return DecodedImage(
        channels=channels,
        kind=ScanKind.DUAL,
        bit_depth=min(hi.bit_depth, lo.bit_depth),  # provenance: the coarser of the two
        energies=hi.energies + lo.energies if hi.energies and lo.energies else (),
        pixel_mm=hi.pixel_mm or lo.pixel_mm,
        meta={**lo.meta, **hi.meta},
    )


def _decode(f: ScanFile, out: np.ndarray | None = None) -> DecodedImage:
    """Decode one file; a grey PNG writes its channel into `out` (1, H, W) when given."""
    try:
        if f.format == "png":
            return _decode_png(f, out)
        decoder = {"jpeg": _decode_jpeg, "tiff": _decode_tiff, "dicom": _decode_dicom}[f.format]
        return decoder(f)
    except ScanReadError:
        raise
    except ScanError as e:
        raise ScanReadError(f.path, str(e)) from e
    except Exception as e:  # cv2.error, tifffile's many error types, MemoryError, ...
        raise ScanReadError(f.path, f"cannot decode {f.format.upper()} file: {e}") from e


def _to_unit(
    path: Path, pixels: np.ndarray, *, bits: int | None = None, out: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Pixel values as float32 in [0, 1], with the bit depth they came from.

    `bits` is the stored bits per sample where the file says (a 12-bit TIFF's 4095 is 1).
    `out`, of the pixels' shape, receives 8- and full 16-bit values.
    """
    dt = pixels.dtype
    # One SIMD pass (cast and divide) into `out`: measured 0.4 ms for a 40-ft channel, against
    # 2.3 ms for a 65,536-entry lookup table (numpy's gather) and 1.2 ms for cast, divide, clip.
    if dt.kind == "u" and dt.itemsize == 1:
        return np.divide(pixels, np.float32(255.0), out=out, dtype=np.float32), 8
    if dt.kind == "u" and dt.itemsize == 2:
        if bits is None or not 8 < bits < 16:
            return np.divide(pixels, np.float32(65535.0), out=out, dtype=np.float32), 16
        top = (1 << bits) - 1
        return np.minimum(pixels.astype(np.float32) / np.float32(top), np.float32(1.0)), 16
    if dt.kind == "f" and dt.itemsize == 4:
        values = pixels.astype(np.float32)
        if not np.isfinite(values).all():
            raise ScanReadError(path, "float32 pixels include NaN or infinity; expected transmission in [0, 1]")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise ScanReadError(path, f"float32 pixels span [{lo:g}, {hi:g}]; expected transmission in [0, 1]")
        return values, 16  # float data is finer than 16 bits; 16 is the closest provenance label
    raise ScanReadError(path, f"unsupported pixel type {dt}; expected uint8, uint16 or float32 in [0, 1]")


def _from_cv2(f: ScanFile, pixels: np.ndarray | None, out: np.ndarray | None = None) -> DecodedImage:
    if pixels is None:  # cv2 reports decode failures by returning None
        raise ScanReadError(f.path, f"corrupt or truncated {f.format.upper()} file (decoder failed)")
    into = out[0] if out is not None and pixels.ndim == 2 and out.shape[1:] == pixels.shape else None
    values, depth = _to_unit(f.path, pixels, out=into)
    if values.ndim == 2:
        return DecodedImage(values[None], ScanKind.SINGLE, depth)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        rgb = values[:, :, 2::-1]  # cv2 gives BGR(A); drop alpha, reorder to RGB
        return DecodedImage(np.ascontiguousarray(rgb.transpose(2, 0, 1)), ScanKind.RGB, depth)
    raise ScanReadError(f.path, f"unsupported image layout {pixels.shape}")


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type; a palette decodes to RGB


def _png_header(f: ScanFile) -> tuple[int, int, int, int]:
    """(width, height, decoded samples, bytes per stored sample), the size checked and the chunk
    chain walked to IEND, with nothing decoded.

    Raises:
        ScanReadError: no IHDR, an absurd size, a truncated chain, bytes after IEND, or a claimed
            size the compressed data cannot plausibly hold.
    """
    data = f.data
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ScanReadError(f.path, "truncated or corrupt PNG: no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    check_image_size(f.path, width, height)
    depth, colour = data[24], data[25]
    channels = _PNG_CHANNELS.get(colour, 4)
    pos, idat, end = len(PNG_MAGIC), 0, None
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if kind == b"IDAT":
            idat += length
        if kind == b"IEND":
            end = pos
            break
    if end is None or end > len(data):
        raise ScanReadError(f.path, "truncated PNG: the file ends before its IEND chunk")
    if end < len(data):
        # Refused, not trimmed: what is stored is exactly what was sent, and 120 MB of padding is not a scan.
        raise ScanReadError(f.path, f"{len(data) - end} bytes after the PNG's IEND chunk (not part of the image)")
    sample_bytes = 2 if depth == 16 else 1
    check_compression(f.path, width * height * channels * sample_bytes, idat, "PNG image data")
    return width, height, channels, sample_bytes


def _decode_png(f: ScanFile, out: np.ndarray | None = None) -> DecodedImage:
    _png_header(f)
    # IMREAD_UNCHANGED keeps 16-bit samples; any other flag would cut them to 8 bits. OpenCV
    # (libpng) measured as fast as pyspng and imagecodecs on 40-ft 16-bit scans (23 ms each,
    # within 1 ms; zlib's inflate dominates), so it stays the one PNG decoder.
    return _from_cv2(f, cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_UNCHANGED), out)


# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


# Bytes a JPEG may carry after its last end-of-image marker (some writers pad); more is not a scan.
_JPEG_MAX_TRAILING = 4096


def _jpeg_checked(f: ScanFile) -> tuple[int, int, int]:
    """(width, height, components), checked against the bytes present, with nothing decoded."""
    data = f.data
    (width, height), components, scan_start = _jpeg_header(f)
    check_image_size(f.path, width, height)
    # Entropy-coded data never holds FF D9, so an end-of-image marker after the scan
    # start proves the file is complete (libjpeg would silently grey-fill a truncated one).
    eoi = data.rfind(b"\xff\xd9")
    if eoi < scan_start:
        raise ScanReadError(f.path, "truncated JPEG: no end-of-image marker")
    if len(data) - (eoi + 2) > _JPEG_MAX_TRAILING:
        raise ScanReadError(f.path, f"{len(data) - eoi - 2} bytes after the JPEG's end-of-image marker")
    # A 335-byte file claiming 8000 x 8000 pixels would decode to a grey field of 64 Mpixels.
    check_compression(f.path, width * height * components, eoi + 2 - scan_start, "JPEG image data")
    return width, height, components


def _decode_jpeg(f: ScanFile) -> DecodedImage:
    _jpeg_checked(f)
    return _from_cv2(f, cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_UNCHANGED))


def _jpeg_header(f: ScanFile) -> tuple[tuple[int, int], int, int]:
    """((width, height), components, offset of the start-of-scan marker), walking the marker segments."""
    data, pos, size, components = f.data, 2, None, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ScanReadError(f.path, f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:
            if size is None:
                raise ScanReadError(f.path, "corrupt JPEG: image data before any frame header")
            return size, components, pos
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF and pos + 10 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size, components = (width, height), max(int(data[pos + 9]), 1)
        pos += 2 + length
    raise ScanReadError(f.path, "truncated JPEG: the file ends inside its header")


# A scan is one page (grey or RGB) or two (high, low); a few more leave room for thumbnails.
MAX_TIFF_PAGES = 16


def _check_tiff_pages(f: ScanFile, tif: tifffile.TiffFile) -> None:
    """Walk the page chain a page at a time before anything reads it whole: a chain that comes
    back on itself made tifffile loop for ever on a 3 KB file (found by fuzzing)."""
    offsets: set[int] = set()
    for index in range(MAX_TIFF_PAGES + 1):
        try:
            page = tif.pages[index]
        except IndexError:
            return
        if index == MAX_TIFF_PAGES:
            raise ScanReadError(f.path, f"TIFF with more than {MAX_TIFF_PAGES} pages is not a scan")
        offset = int(getattr(page, "offset", -1))
        if offset in offsets:
            raise ScanReadError(f.path, f"corrupt TIFF: its page chain loops back to offset {offset}")
        offsets.add(offset)


def _decode_tiff(f: ScanFile) -> DecodedImage:
    with tifffile.TiffFile(io.BytesIO(f.data)) as tif:
        _check_tiff_pages(f, tif)
        if not tif.series or not len(tif.pages):
            raise ScanReadError(f.path, "corrupt TIFF: no readable image in the file")
        series = tif.series[0]
        page = tif.pages.first
        shape = tuple(int(n) for n in series.shape)
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        rgb_photometric = page.photometric == tifffile.PHOTOMETRIC.RGB
        if len(shape) == 2:
            layout, (height, width) = "hw", shape
        elif len(shape) == 3 and shape[0] == 2:
            layout, (height, width) = "dual-chw", shape[1:]
        elif len(shape) == 3 and shape[2] == 2:
            layout, (height, width) = "dual-hwc", shape[:2]
        elif len(shape) == 3 and shape[2] in (3, 4):
            layout, (height, width) = "rgb-hwc", shape[:2]
        elif len(shape) == 3 and shape[0] == 3 and rgb_photometric:
            layout, (height, width) = "rgb-chw", shape[1:]
        else:
            raise ScanReadError(
                f.path,
                f"TIFF holds images of shape {shape}; expected one image (single energy), "
                "two (high, low energy) or one RGB image",
            )
        check_image_size(f.path, width, height)
        stored = 0
        for p in series.pages:
            if p is None:
                continue
            for offset, count in zip(p.dataoffsets, p.databytecounts, strict=True):
                if offset + count > len(f.data):
                    raise ScanReadError(f.path, "truncated TIFF: image data runs past the end of the file")
                stored += count
        samples = 1
        for n in shape:
            samples *= n
        check_compression(f.path, samples * series.dtype.itemsize, stored, "TIFF image data")
        pixels: np.ndarray | None
        try:
            pixels = series.asarray()
        except Exception as e:  # typically a codec (LZW, ...) that needs the optional imagecodecs
            pixels = _grey_tiff_via_cv2(f, shape) if layout in ("hw", "dual-chw") else None
            if pixels is None:
                raise ScanReadError(f.path, f"cannot decode TIFF file: {e}") from e
        description = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        bits = int(page.bitspersample)
    values, depth = _to_unit(f.path, pixels.reshape(shape), bits=bits)
    if layout == "hw":
        channels, kind = values[None], ScanKind.SINGLE
    elif layout == "dual-chw":
        channels, kind = values, ScanKind.DUAL
    elif layout == "dual-hwc":
        channels, kind = values.transpose(2, 0, 1), ScanKind.DUAL
    elif layout == "rgb-hwc":
        channels, kind = values[:, :, :3].transpose(2, 0, 1), ScanKind.RGB
    else:
        channels, kind = values, ScanKind.RGB
    energies, pixel_mm = _tiff_description(description, channels.shape[0])
    return DecodedImage(np.ascontiguousarray(channels), kind, depth, energies=energies, pixel_mm=pixel_mm)


def _grey_tiff_via_cv2(f: ScanFile, shape: tuple[int, ...]) -> np.ndarray | None:
    """Grey TIFF pages decoded by OpenCV's libtiff (LZW, PackBits, ... without imagecodecs); None if it cannot."""
    ok, pages = cv2.imdecodemulti(np.frombuffer(f.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if not ok or not pages:
        return None
    pixels = np.stack(pages) if len(shape) == 3 else pages[0]
    return pixels if pixels.shape == shape else None


def _tiff_description(
    description: dict[str, Any], n_channels: int
) -> tuple[tuple[str, ...], tuple[float, float] | None]:
    """Energy labels and pixel spacing that `write_tiff` stores in the JSON image description."""
    energies = description.get("energies")
    labels = tuple(str(e) for e in energies) if isinstance(energies, list) and len(energies) == n_channels else ()
    spacing = description.get("pixel_mm")
    try:
        pixel_mm = (float(spacing[0]), float(spacing[1])) if isinstance(spacing, list) and len(spacing) == 2 else None
    except (TypeError, ValueError):
        pixel_mm = None
    return labels, pixel_mm


def _decode_dicom(f: ScanFile) -> DecodedImage:
    return decode_dicos(f.data, path=f.path)


def _tiff_samples(f: ScanFile) -> int:
    with tifffile.TiffFile(io.BytesIO(f.data)) as tif:
        _check_tiff_pages(f, tif)
        if not tif.series:
            raise ScanReadError(f.path, "corrupt TIFF: no readable image in the file")
        samples = 1
        for n in tif.series[0].shape:
            samples *= int(n)
        return samples


def decode_cost(f: ScanFile) -> int:
    """Peak memory, in bytes, that decoding `f` will take, from its header alone (nothing is decoded).

    The service reserves this from its memory budget before decoding.

    Raises:
        ScanReadError: the header is unreadable, claims an absurd size, or more pixels than its
            bytes can hold (the same checks the decoder makes first).
    """
    try:
        if f.format == "png":
            width, height, channels, _ = _png_header(f)
            samples = width * height * channels
        elif f.format == "jpeg":
            width, height, components = _jpeg_checked(f)
            samples = width * height * components
        elif f.format == "tiff":
            samples = _tiff_samples(f)
        else:
            samples = dicos_samples(f.data, path=f.path)
    except ScanReadError:
        raise
    except Exception as e:  # a header a library cannot parse
        raise ScanReadError(f.path, f"cannot read {f.format.upper()} header: {e}") from e
    return decoded_cost(samples)


def _quantise(transmission: np.ndarray, bits: int) -> np.ndarray:
    values = np.asarray(transmission, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ScanError("cannot write pixels that include NaN or infinity")
    top = (1 << bits) - 1
    return np.round(np.clip(values, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)


def write_png16(path: str | Path, transmission: np.ndarray, *, level: int | None = None) -> Path:
    """Write transmission in [0, 1] as a 16-bit PNG (round(T * 65535), clipped).

    The one place xray writes 16-bit PNGs (datasets, the demo, the benchmark inputs).

    Args:
        path: Output file.
        transmission: (H, W) or (1, H, W) grey, or (3, H, W) RGB.
        level: Deflate level 0-9; 0 stores the pixels unfiltered and uncompressed (fastest to
            decode). Default: OpenCV's.

    Raises:
        ScanError: wrong shape, non-finite values or a level outside 0-9.
    """
    values = np.asarray(transmission)
    if values.ndim == 3 and values.shape[0] in (1, 3):
        values = values[0] if values.shape[0] == 1 else values.transpose(1, 2, 0)[:, :, ::-1]  # RGB -> cv2's BGR
    elif values.ndim != 2:
        raise ScanError(f"write_png16 needs (H, W), (1, H, W) or (3, H, W) pixels, got shape {values.shape}")
    params: list[int] = []
    if level is not None:
        if not 0 <= level <= 9:
            raise ScanError(f"PNG deflate level must be 0-9, got {level}")
        params = [cv2.IMWRITE_PNG_COMPRESSION, level]
        if level == 0:
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, encoded = cv2.imencode(".png", _quantise(values, 16), params)
    if not ok:
        raise ScanError(f"PNG encoder failed for pixels of shape {values.shape}")
    out = Path(path)
    out.write_bytes(encoded.tobytes())  # bytes, not cv2.imwrite: works on any path, raises on failure
    return out


def write_tiff(path: str | Path, scan: Scan) -> Path:
    """Write a scan as a TIFF that `read_scan` reads back exactly (at the scan's bit depth).

    Single energy is one page, dual energy two pages (high, low), RGB one RGB page;
    pixel spacing and energy labels go to the JSON image description.
    """
    pixels = _quantise(scan.channels, 16 if scan.bit_depth == 16 else 8)
    description = {"pixel_mm": [float(v) for v in scan.pixel_mm], "energies": list(scan.energies)}
    if scan.kind is ScanKind.RGB:
        data, photometric = pixels.transpose(1, 2, 0), "rgb"
    else:
        data, photometric = (pixels[0] if scan.kind is ScanKind.SINGLE else pixels), "minisblack"
    out = Path(path)
    tifffile.imwrite(out, np.ascontiguousarray(data), photometric=photometric, metadata=description)
    return out
