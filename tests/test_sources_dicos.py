"""DICOS/DICOM scans: bit-exact round trips, metadata, energy order, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pixels import H, W, as_u16, levels16
from pydicom.uid import ExplicitVRLittleEndian

from xray.errors import ScanError, ScanReadError
from xray.scan import Scan, ScanKind
from xray.sources.dicos import read_dicos, write_dicos
from xray.sources.files import read_scan


def make_scan(kind: ScanKind = ScanKind.SINGLE, **fields: object) -> Scan:
    n = 2 if kind is ScanKind.DUAL else 1
    values = np.stack([levels16(i) for i in range(n)])
    return Scan(id="c1", channels=(values / 65535.0).astype(np.float32), kind=kind, **fields)


META = {"container_id": "MSCU1234565", "time": "2024-05-01T12:30:15", "manufacturer": "ACME Linac", "scanner": "X6"}


def test_single_energy_round_trip_is_bit_exact_with_metadata(tmp_path: Path) -> None:
    scan = make_scan(pixel_mm=(3.25, 5.0), energies=("6MV",), meta=META)
    path = write_dicos(tmp_path / "c1.dcm", scan)
    back = read_dicos(path)
    assert back.kind is ScanKind.SINGLE and back.bit_depth == 16 and back.id == "c1"
    np.testing.assert_array_equal(as_u16(back.channels), as_u16(scan.channels))
    assert back.pixel_mm == (3.25, 5.0)
    assert back.energies == ("6MV",)
    assert {k: back.meta[k] for k in META} == META
    assert back.meta["paths"] == [str(path)]


def test_dual_energy_round_trip_is_bit_exact(tmp_path: Path) -> None:
    scan = make_scan(ScanKind.DUAL, energies=("6MV", "4MV"))
    back = read_dicos(write_dicos(tmp_path / "d.dcm", scan))
    assert back.kind is ScanKind.DUAL and back.energies == ("6MV", "4MV")
    np.testing.assert_array_equal(as_u16(back.channels), as_u16(scan.channels))


def test_written_file_is_valid_dicom(tmp_path: Path) -> None:
    path = write_dicos(tmp_path / "d.dcm", make_scan(ScanKind.DUAL, pixel_mm=(4.0, 4.0)))
    assert path.read_bytes()[128:132] == b"DICM"
    ds = pydicom.dcmread(path)  # without force: needs preamble and file meta
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.NumberOfFrames == 2
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 0)
    assert [float(v) for v in ds.PixelSpacing] == [4.0, 4.0]
    assert ds.pixel_array.shape == (2, H, W) and ds.pixel_array.dtype == np.uint16
    single = pydicom.dcmread(write_dicos(tmp_path / "s.dcm", make_scan()))
    assert single.SOPClassUID.name == "Digital X-Ray Image Storage - For Processing"
    assert "NumberOfFrames" not in single


def test_dual_frames_labelled_low_first_are_reordered_high_first(tmp_path: Path) -> None:
    scan = make_scan(ScanKind.DUAL, energies=("4MV", "6MV"))  # frames stored low, high
    back = read_dicos(write_dicos(tmp_path / "d.dcm", scan))
    assert back.energies == ("6MV", "4MV")
    np.testing.assert_array_equal(as_u16(back.channels[0]), as_u16(scan.channels[1]))


def test_dual_without_labels_is_taken_as_high_then_low(tmp_path: Path) -> None:
    path = write_dicos(tmp_path / "d.dcm", make_scan(ScanKind.DUAL))
    ds = pydicom.dcmread(path)
    del ds.FrameLabelVector
    ds.save_as(path)
    back = read_dicos(path)
    assert back.energies == ("high", "low")


def test_read_scan_dispatches_dicom_by_content(tmp_path: Path) -> None:
    scan = make_scan(ScanKind.DUAL, energies=("6MV", "4MV"), meta=META)
    path = write_dicos(tmp_path / "scan.bin", scan)  # no DICOM suffix: found by the DICM magic
    back = read_scan(path)
    assert back.kind is ScanKind.DUAL and back.meta["formats"] == ["dicom"]
    assert back.meta["container_id"] == META["container_id"]
    np.testing.assert_array_equal(as_u16(back.channels), as_u16(scan.channels))


def test_12_bit_detector_data_scales_by_stored_bits(tmp_path: Path) -> None:
    path = write_dicos(tmp_path / "d.dcm", make_scan())
    ds = pydicom.dcmread(path)
    values = (levels16() >> 4).astype(np.uint16)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = values.tobytes()
    ds.save_as(path)
    back = read_dicos(path)
    np.testing.assert_array_equal(np.round(back.channels[0] * 4095).astype(np.uint16), values)
    assert back.channels.max() == 1.0


def test_monochrome1_is_inverted_to_transmission(tmp_path: Path) -> None:
    scan = make_scan()
    path = write_dicos(tmp_path / "d.dcm", scan)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)
    np.testing.assert_array_equal(as_u16(read_dicos(path).channels), 65535 - as_u16(scan.channels))


def test_pixel_mm_and_scan_id_can_be_overridden(tmp_path: Path) -> None:
    path = write_dicos(tmp_path / "d.dcm", make_scan(pixel_mm=(3.0, 3.0)))
    back = read_dicos(path, scan_id="given", pixel_mm=(5.0, 6.0))
    assert back.id == "given" and back.pixel_mm == (5.0, 6.0)


def test_pseudo_colour_scan_is_not_written(tmp_path: Path) -> None:
    rgb = Scan(id="r", channels=np.zeros((3, H, W), np.float32), kind=ScanKind.RGB)
    with pytest.raises(ScanError, match="pseudo-colour"):
        write_dicos(tmp_path / "r.dcm", rgb)


def _edited(tmp_path: Path, **changes: object) -> bytes:
    path = write_dicos(tmp_path / "src.dcm", make_scan(ScanKind.DUAL))
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path.read_bytes()


BAD_FILES = {
    "zero bytes": (lambda t: b"", "empty"),
    "text renamed .dcm": (lambda t: b"DICOM export failed\n" * 10, "no pixel data"),
    "truncated": (lambda t: write_dicos(t / "s.dcm", make_scan()).read_bytes()[:-1000], "truncated"),
    "header only": (lambda t: write_dicos(t / "s.dcm", make_scan()).read_bytes()[:400], "no pixel data"),
    "bomb": (lambda t: _edited(t, Rows=60000, Columns=60000), "decompression bomb"),
    "three frames": (lambda t: _edited(t, NumberOfFrames=3), "3 frames"),
    "signed pixels": (lambda t: _edited(t, PixelRepresentation=1), "signed"),
    "32-bit pixels": (lambda t: _edited(t, BitsAllocated=32, BitsStored=32), "BitsAllocated=32"),
    "no pixel data": (lambda t: _edited(t, PixelData=None), "no pixel data"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_dicos_raises_scan_read_error(tmp_path: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    path = tmp_path / "bad.dcm"
    path.write_bytes(make(tmp_path))
    for read in (read_dicos, read_scan):
        with pytest.raises(ScanReadError) as info:
            read(path)
        assert info.value.path == str(path) and reason in info.value.reason


def test_missing_dicos_file(tmp_path: Path) -> None:
    with pytest.raises(ScanReadError, match="file not found"):
        read_dicos(tmp_path / "nope.dcm")
