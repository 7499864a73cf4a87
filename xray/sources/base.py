"""The `ImageSource` interface: anything that yields `Scan`s."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from xray.scan import Scan


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
