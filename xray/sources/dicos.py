"""DICOS / DICOM scan files, read and written with pydicom.

DICOS (NEMA IIC 1) is DICOM for security screening: the same file format and
pixel encoding, with an "object of inspection" (the container) in place of the
patient; its OOI ID lives in the Patient ID element (0010,0020).

Reading accepts any DICOM object with 8- or 16-bit unsigned grey pixel data
(DX, DICOS DX/CT slices, secondary capture): one frame is a single-energy scan,
two frames are a dual-energy scan (high, low), three samples per pixel are a
pseudo-colour rendering. Pixel values are scaled by the stored bit depth
(a 12-bit detector's 4095 is transmission 1).

Writing produces what this reader needs and a DICOM viewer accepts: explicit VR
little endian, MONOCHROME2, 16 bits allocated and stored. A single-energy scan is
a Digital X-Ray Image "For Processing" (transmission is raw data, not a rendering);
the DX IOD is single-frame, so a dual-energy scan is a Multi-frame Grayscale Word
Secondary Capture image whose two frames are labelled by Frame Label Vector.
"""

from __future__ import annotations

import io
import re
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import DT, format_number_as_ds

from xray.errors import ScanError, ScanReadError
from xray.scan import Scan, ScanKind
from xray.sources.base import (
    MAX_COMPRESSION_RATIO,
    MAX_FILE_BYTES,
    DecodedImage,
    ScanFile,
    check_compression,
    check_image_size,
)

# Transfer syntaxes whose pixel data is stored raw, so its length can be checked.
_UNCOMPRESSED = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired)
}
_DEFLATED = "1.2.840.10008.1.2.1.99"  # deflated explicit VR little endian: the whole dataset is zlib'd
_INFLATE_CHUNK = 1 << 20
_FRAME_LABEL_VECTOR = 0x00182002
_ENERGY_LABEL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MV|MeV|kVp|kV|keV)\s*$", re.IGNORECASE)


def read_dicos(path: str | Path, *, scan_id: str | None = None, pixel_mm: tuple[float, float] | None = None) -> Scan:
    """Read a DICOS/DICOM scan file at full bit depth.

    Args:
        path: The file.
        scan_id: Scan id; defaults to the file stem.
        pixel_mm: Pixel spacing (row, column) in mm, overriding the file's PixelSpacing.

    Raises:
        ScanReadError: The file is missing, not DICOM, truncated, or holds pixel data
            this reader cannot use.
    """
    f = ScanFile.load(path)  # the same missing-file and size checks as every other format
    image = decode_dicos(f.data, path=f.path)
    return image.to_scan(
        f.path,
        scan_id=scan_id or f.path.stem,
        pixel_mm=pixel_mm,
        energies=image.energies,
        meta={"paths": [str(f.path)], "formats": ["dicom"]},
    )


def decode_dicos(data: bytes, *, path: str | Path) -> DecodedImage:
    """Decode the bytes of a DICOS/DICOM file into pixels and what the file says (see `read_dicos`).

    `path` names the file in errors. `xray.sources.files` makes the `Scan` of it.
    """
    p = Path(path)
    ds = _read_dataset(data, p)
    try:
        return _image_of_dataset(ds, p)
    except ScanReadError:
        raise
    except ScanError as e:
        raise ScanReadError(p, str(e)) from e
    except Exception as e:  # pydicom raises many types on malformed elements
        raise ScanReadError(p, f"corrupt DICOS/DICOM file: {e}") from e


def _check_inflated_size(data: bytes, path: Path) -> None:
    """For a deflated dataset, count its inflated size in constant memory before pydicom inflates it
    whole (a 1.1 MB deflated file can inflate to gigabytes).

    Raises:
        ScanReadError: the inflated dataset would exceed the file-size limit or the compression ratio.
    """
    fp = io.BytesIO(data)
    try:
        pydicom.filereader.read_preamble(fp, force=True)
        meta = pydicom.filereader._read_file_meta_info(fp)
    except Exception:
        return  # no readable file meta: pydicom's own read reports what is wrong
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return
    start = fp.tell()
    limit = min(MAX_FILE_BYTES, MAX_COMPRESSION_RATIO * max(len(data) - start, 1))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[start:], 0
    try:
        while pending and total <= limit:
            total += len(inflater.decompress(pending, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
    except zlib.error as e:
        raise ScanReadError(path, f"corrupt deflated DICOM data: {e}") from None
    check_compression(path, total, len(data) - start, "deflated DICOM dataset")


def _read_dataset(data: bytes, path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    if not data:
        raise ScanReadError(path, "empty file (0 bytes)")
    _check_inflated_size(data, path)
    try:
        # force=True also accepts files without the 128-byte preamble (older writers);
        # what is not DICOM at all then fails the checks below.
        return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
    except Exception as e:
        raise ScanReadError(path, f"not a readable DICOS/DICOM file: {e}") from e


def dicos_samples(data: bytes, *, path: str | Path) -> int:
    """Pixel samples a DICOS/DICOM file declares (rows x columns x frames x samples per pixel), read
    from its header with the same size checks as decoding, and no pixel data touched.

    Raises:
        ScanReadError: unreadable header, or an absurd or implausible size.
    """
    p = Path(path)
    ds = _read_dataset(data, p, stop_before_pixels=True)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    check_image_size(p, cols, rows)
    if not (1 <= frames <= 2 and samples in (1, 3)):
        raise ScanReadError(p, f"{frames} frames of {samples} samples per pixel; expected 1-2 frames of 1 or 3")
    return rows * cols * frames * samples


def _image_of_dataset(ds: Dataset, path: Path) -> DecodedImage:
    if "PixelData" not in ds:
        raise ScanReadError(path, "no pixel data (not a DICOS/DICOM image)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    # Check the header's claims before decoding anything (decompression bombs).
    check_image_size(path, cols, rows)
    if samples not in (1, 3):
        raise ScanReadError(path, f"{samples} samples per pixel; expected 1 (grey) or 3 (colour)")
    if frames not in (1, 2) or (samples == 3 and frames != 1):
        raise ScanReadError(path, f"{frames} frames; expected 1 (single energy) or 2 (high, low energy)")
    bits_allocated = int(ds.get("BitsAllocated", 0) or 0)
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise ScanReadError(
            path,
            f"unsupported pixel depth (BitsAllocated={bits_allocated}, BitsStored={bits_stored}); expected 8 or 16",
        )
    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        raise ScanReadError(path, "signed pixel data; transmission images are unsigned")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if samples == 1 and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ScanReadError(path, f"photometric interpretation {photometric} with one sample per pixel")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    expected = rows * cols * frames * samples * bits_allocated // 8
    if syntax in _UNCOMPRESSED or syntax == _DEFLATED or not syntax:
        if len(ds.PixelData) < expected:
            raise ScanReadError(path, f"truncated: pixel data holds {len(ds.PixelData)} of {expected} bytes")
    else:  # encapsulated (JPEG, RLE, ...): the compressed frames must plausibly hold what the header claims
        check_compression(path, expected, len(ds.PixelData), "DICOM pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as e:
        raise ScanReadError(path, f"cannot decode pixel data (transfer syntax {syntax or 'unknown'}): {e}") from e

    max_value = float((1 << bits_stored) - 1)
    values = np.asarray(pixels)
    if photometric == "MONOCHROME1":  # MONOCHROME1 shows low values bright: flip to transmission
        values = max_value - values.astype(np.float32)
    channels = np.clip(values.astype(np.float32) / np.float32(max_value), 0.0, 1.0)
    if samples == 3:
        kind = ScanKind.RGB
        channels = channels.transpose(2, 0, 1)
        energies: tuple[str, ...] = ()
    elif frames == 2:
        kind = ScanKind.DUAL
        channels, energies = _dual_energy_order(channels, _frame_labels(ds))
    else:
        kind = ScanKind.SINGLE
        channels = channels[None]
        kv = _kvp_label(ds)
        energies = (kv,) if kv else ()
    return DecodedImage(
        channels=np.ascontiguousarray(channels, dtype=np.float32),
        kind=kind,
        bit_depth=8 if bits_stored <= 8 else 16,
        energies=energies,
        pixel_mm=_pixel_spacing(ds),
        meta=_dataset_meta(ds),
    )


def _frame_labels(ds: Dataset) -> tuple[str, ...]:
    labels = ds.get("FrameLabelVector")
    if labels is None:
        return ()
    values = [labels] if isinstance(labels, str) else list(labels)
    return tuple(str(v).strip() for v in values) if len(values) == 2 else ()


def _dual_energy_order(frames: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Put the high energy first. Frames are taken as (high, low) unless their labels say otherwise."""
    if not labels:
        return frames, ("high", "low")
    kv = [_kilovolts(label) for label in labels]
    if kv[0] is not None and kv[1] is not None and kv[0] < kv[1]:
        return frames[::-1], labels[::-1]
    if labels[0].lower() in ("low", "le") and labels[1].lower() in ("high", "he"):
        return frames[::-1], labels[::-1]
    return frames, labels


def _kilovolts(label: str) -> float | None:
    """Peak energy in kV of a label like "6MV", "4 MeV" or "160kVp"; None if it is not one."""
    m = _ENERGY_LABEL.match(label)
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2).lower()
    return value * 1000.0 if unit in ("mv", "mev") else value


def _energy_label(kv: float) -> str:
    return f"{kv / 1000.0:g}MV" if kv >= 1000.0 else f"{kv:g}kV"


def _kvp_label(ds: Dataset) -> str | None:
    try:
        kv = float(ds.get("KVP", 0) or 0)
    except (TypeError, ValueError):
        return None
    return _energy_label(kv) if kv > 0 else None


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    # PixelSpacing is at the object; ImagerPixelSpacing (DX) at the detector: better than nothing.
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            try:
                return (float(value[0]), float(value[1]))
            except (TypeError, ValueError):
                continue
    return None


def _dataset_meta(ds: Dataset) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, keyword in (
        ("container_id", "PatientID"),  # DICOS: OOI ID
        ("manufacturer", "Manufacturer"),
        ("scanner", "ManufacturerModelName"),
        ("station", "StationName"),
        ("sop_class_uid", "SOPClassUID"),
        ("sop_instance_uid", "SOPInstanceUID"),
    ):
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[key] = str(value)
    time = _acquisition_time(ds)
    if time:
        meta["time"] = time
    return meta


def _acquisition_time(ds: Dataset) -> str | None:
    """ISO 8601 time of the scan from the first of AcquisitionDateTime, Content/Study date+time."""
    candidates = [str(ds.get("AcquisitionDateTime", "") or "")]
    for date_kw, time_kw in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
        date = str(ds.get(date_kw, "") or "")
        if date:
            candidates.append(date + str(ds.get(time_kw, "") or ""))
    for raw in candidates:
        if raw:
            try:
                return DT(raw).isoformat()
            except (TypeError, ValueError):
                return raw
    return None


def write_dicos(path: str | Path, scan: Scan) -> Path:
    """Write a single- or dual-energy scan as a DICOM file that `read_dicos` reads back bit-exactly.

    Transmission is quantised to 16 bits (round(T * 65535)). Energy labels go to
    Frame Label Vector (dual) or KVP (single); meta["container_id"], ["manufacturer"],
    ["scanner"] and ["time"] (ISO 8601) go to their DICOM elements.

    Raises:
        ScanError: `scan` is a pseudo-colour rendering (DICOS holds physical data only).
    """
    if scan.kind is ScanKind.RGB:
        raise ScanError(f"scan {scan.id!r}: a pseudo-colour scan cannot be written as DICOS")
    dual = scan.kind is ScanKind.DUAL
    sop_class = MultiFrameGrayscaleWordSecondaryCaptureImageStorage if dual else DigitalXRayImageStorageForProcessing
    pixels = np.round(np.clip(scan.channels, 0.0, 1.0) * 65535.0).astype("<u2")

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = sop_class
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientID = str(scan.meta.get("container_id", ""))
    ds.PatientName = ""
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = str(scan.meta.get("manufacturer", ""))
    if scan.meta.get("scanner"):
        ds.ManufacturerModelName = str(scan.meta["scanner"])
    if scan.meta.get("time"):
        try:
            ds.AcquisitionDateTime = datetime.fromisoformat(str(scan.meta["time"])).strftime("%Y%m%d%H%M%S.%f")
        except ValueError:
            pass  # not ISO 8601: better no time than a malformed DT element
    ds.Rows, ds.Columns = scan.height, scan.width
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [format_number_as_ds(float(v)) for v in scan.pixel_mm]
    if dual:
        ds.NumberOfFrames = 2
        ds.FrameIncrementPointer = _FRAME_LABEL_VECTOR
        labels = scan.energies if len(scan.energies) == 2 else ("high", "low")
        ds.FrameLabelVector = [str(v)[:16] for v in labels]  # SH: at most 16 characters
    kv = _kilovolts(scan.energies[0]) if scan.energies else None
    if kv is not None:
        ds.KVP = format_number_as_ds(kv)
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"

    out = Path(path)
    ds.save_as(out, enforce_file_format=True)
    return out
