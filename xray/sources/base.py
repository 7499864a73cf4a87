"""What every source shares: the `ImageSource` interface, a scan file's bytes (`ScanFile`) and a decoded
image (`DecodedImage`), so that the format modules (files, dicos) need not import one another."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xray.errors import ScanError, ScanReadError
from xray.scan import DEFAULT_PIXEL_MM, MAX_PIXELS, MAX_SIDE, Scan, ScanKind

# A 64-Mpixel dual-energy 16-bit image is 256 MiB raw; a larger file is not a scan.
MAX_FILE_BYTES = 1 << 30
# A colour file is grey when at most this share of its pixels has channels further apart than
# NEUTRAL_SPREAD (JPEG chroma noise on grey stays within a few levels; burned-in coloured text
# and markers cover a small share; a pseudo-colour map colours nearly every pixel).
NEUTRAL_SPREAD = 12 / 255
NEUTRAL_COLOURED_SHARE = 0.02

# Decoded bytes per stored byte: real scans are noisy and compress a few times at most;
# a tiny file that claims far more (a 62 KB PNG of 8000 x 8000 zeros) is a decompression bomb.
MAX_COMPRESSION_RATIO = 200
# float32 channels plus the decoder's own buffer and one working copy, per decoded sample.
_BYTES_PER_DECODED_SAMPLE = 12

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_JPEG_MAGIC = b"\xff\xd8\xff"
_FORMAT_OF_SUFFIX = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".dcm": "DICOM",
    ".dicos": "DICOM",
}


@dataclass(frozen=True)
class ScanFile:
    """The bytes of one scan file, read once so that hashing and decoding see the same content."""

    path: Path
    data: bytes = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> ScanFile:
        """Read a file.

        Raises:
            ScanReadError: missing, unreadable, or larger than `MAX_FILE_BYTES`.
        """
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ScanReadError(p, f"file is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit of a scan")
            return cls(p, p.read_bytes())
        except FileNotFoundError as e:
            raise ScanReadError(p, "file not found") from e
        except IsADirectoryError as e:
            raise ScanReadError(p, "is a directory, not a scan file") from e
        except OSError as e:
            raise ScanReadError(p, f"cannot read file: {e.strerror or e}") from e

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def format(self) -> str:
        """The format, from the content: "png", "tiff", "jpeg" or "dicom".

        Raises:
            ScanReadError: empty, or none of these formats.
        """
        data = self.data
        if not data:
            raise ScanReadError(self.path, "empty file (0 bytes)")
        if data.startswith(PNG_MAGIC):
            return "png"
        if data[:4] in _TIFF_MAGICS:
            return "tiff"
        if data.startswith(_JPEG_MAGIC):
            return "jpeg"
        if data[128:132] == b"DICM":
            return "dicom"
        suffix = self.path.suffix.lower()
        if suffix in (".dcm", ".dicos"):
            return "dicom"  # DICOM without the 128-byte preamble has no magic; pydicom decides
        expected = _FORMAT_OF_SUFFIX.get(suffix)
        what = f"content is not {expected} despite the {suffix} suffix" if expected else "unknown file format"
        raise ScanReadError(self.path, f"{what} (starts with {data[:8]!r}; expected PNG, TIFF, JPEG or DICOS/DICOM)")


@dataclass(frozen=True)
class DecodedImage:
    """One decoded file: channels in [0, 1] plus what the file says about itself.

    Decoders (PNG, TIFF, JPEG, DICOS) return this; `to_scan` is the one place a `Scan` is made of it.
    """

    channels: np.ndarray  # float32 (C, H, W)
    kind: ScanKind
    bit_depth: int
    energies: tuple[str, ...] = ()
    pixel_mm: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def as_grey_if_grey_rendering(self) -> DecodedImage:
        """A colour file that renders one grey picture becomes that grey channel (kind SINGLE), so
        that it is read, guarded and judged as the grey scan it is and not as a pseudo-colour
        rendering:

        - pixels that are grey (R = G = B but for JPEG noise and a few coloured marks burned in):
          a single-energy export saved as RGB, as many viewers save them; read as its luminance
          (meta `grey_from_rgb`);
        - pixels on a known false-colour palette (JET and the like): a single-energy export shown
          through that palette; read back through the palette's inverse (meta `palette`), since its
          luminance is not monotonic in the grey level (`xray.sources.palette`).

        Material-coded pseudo-colour (hue from the dual-energy ratio) is neither and stays colour."""
        if self.kind is not ScanKind.RGB or self.channels.shape[0] != 3:
            return self
        sample = self.channels[:, ::4, ::4]  # a strided view: the share is all that is needed
        spread = sample.max(axis=0) - sample.min(axis=0)
        if float(np.mean(spread > NEUTRAL_SPREAD)) > NEUTRAL_COLOURED_SHARE:
            from xray.sources.palette import read_back  # faiss and its lookups only for colour files

            found = read_back(self.channels)
            if found is None:
                return self
            name, grey = found
            return replace(self, channels=grey[None], kind=ScanKind.SINGLE, meta={**self.meta, "palette": name})
        r, g, b = self.channels
        grey = (np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b)[None]
        return replace(
            self, channels=np.ascontiguousarray(grey), kind=ScanKind.SINGLE, meta={**self.meta, "grey_from_rgb": True}
        )

    def to_scan(
        self,
        path: str | Path,
        *,
        scan_id: str,
        pixel_mm: tuple[float, float] | None = None,
        energies: tuple[str, ...] = (),
        meta: dict[str, Any] | None = None,
    ) -> Scan:
        """The scan of this image: the caller's pixel spacing, else the file's, else `DEFAULT_PIXEL_MM`.

        Raises:
            ScanReadError: naming `path`, when the pixels do not make a valid scan.
        """
        try:
            return Scan(
                id=scan_id,
                channels=self.channels,
                kind=self.kind,
                pixel_mm=pixel_mm or self.pixel_mm or DEFAULT_PIXEL_MM,
                bit_depth=self.bit_depth,
                energies=tuple(energies),
                meta={**self.meta, **(meta or {})},
            )
        except ScanError as e:
            raise ScanReadError(path, str(e)) from e


def check_image_size(path: str | Path, width: int, height: int) -> None:
    """Refuse an image whose header claims no size or an absurd one, before decoding it.

    Raises:
        ScanReadError: naming the file; a huge claim is a corrupt header or a decompression bomb.
    """
    if width < 1 or height < 1:
        raise ScanReadError(path, f"image header gives no size ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ScanReadError(
            path,
            f"image header claims {width}x{height} pixels, beyond the {MAX_SIDE}-pixel side / "
            f"{MAX_PIXELS}-pixel limit (corrupt header or decompression bomb)",
        )


def check_compression(path: str | Path, decoded_bytes: int, stored_bytes: int, what: str = "image data") -> None:
    """Refuse a file whose header claims far more pixels than its bytes can plausibly hold, before decoding.

    Raises:
        ScanReadError: naming the file and both sizes.
    """
    if decoded_bytes > MAX_COMPRESSION_RATIO * max(stored_bytes, 1):
        raise ScanReadError(
            path,
            f"{what} of {stored_bytes} bytes claims {decoded_bytes} bytes decoded, more than "
            f"{MAX_COMPRESSION_RATIO} times as much (decompression bomb)",
        )


def decoded_cost(samples: int) -> int:
    """Peak memory, in bytes, of decoding `samples` pixel samples (the budget a decode reserves)."""
    return samples * _BYTES_PER_DECODED_SAMPLE


class ImageSource(ABC):
    """Yields scans. The engine and verifier never know which source a scan came from."""

    @abstractmethod
    def __iter__(self) -> Iterator[Scan]:
        """Yield scans until the source is exhausted (or forever, for live sources)."""

    def close(self) -> None:  # noqa: B027 -- a hook: most sources hold nothing to release
        """Release resources; a no-op unless a source holds some."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
