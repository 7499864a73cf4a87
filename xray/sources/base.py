"""The `ImageSource` interface: anything that yields `Scan`s."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from xray.errors import ScanReadError
from xray.scan import MAX_PIXELS, MAX_SIDE, Scan


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


class ImageSource(ABC):
    """Yields scans. The engine and verifier never know which source a scan came from."""

    @abstractmethod
    def __iter__(self) -> Iterator[Scan]:
        """Yield scans until the source is exhausted (or forever, for live sources)."""

    def close(self) -> None:
        """Release resources; a no-op unless a source holds some."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
