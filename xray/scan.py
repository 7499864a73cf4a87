"""The `Scan`: one X-ray image of a container, as arrays plus metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from xray.errors import ScanError

# Larger than any real scanner output (a 40-ft scan at 3 mm/pixel is ~1300 x 4100);
# anything beyond is a corrupt header or a decompression bomb.
MAX_PIXELS = 64_000_000
MAX_SIDE = 32_768
# Transmission floor: a 16-bit scanner cannot report less than one count.
MIN_TRANSMISSION = 1.0 / 65535.0
# Pixel spacing (row, column) in mm when a file does not carry it: a typical cargo portal.
DEFAULT_PIXEL_MM: tuple[float, float] = (5.0, 5.0)


class ScanKind(StrEnum):
    """What the channels of a scan are."""

    SINGLE = "single"  # one energy, transmission
    DUAL = "dual"  # high energy, low energy; transmission
    RGB = "rgb"  # 8-bit pseudo-colour rendering, not physical transmission


CHANNELS_OF_KIND = {ScanKind.SINGLE: 1, ScanKind.DUAL: 2, ScanKind.RGB: 3}


@dataclass(frozen=True, kw_only=True)
class Scan:
    """One scan: channels as float32 (C, H, W) in [0, 1].

    For SINGLE and DUAL scans the values are transmission T = I / I0 (1 = nothing in
    the beam), high energy first. RGB scans hold a pseudo-colour rendering scaled
    to [0, 1].

    Attributes:
        id: Unique scan id (a file stem, a scanner's image id, a simulator id).
        channels: float32 array (C, H, W); C = 1, 2 or 3 by `kind`.
        kind: What the channels are.
        pixel_mm: Pixel spacing (row, column) in millimetres.
        bit_depth: Bit depth of the source data (8 or 16), kept for provenance.
        energies: Labels of the energy channels, e.g. ("6MV", "4MV").
        meta: Source metadata: scanner, time, container id, file paths.
    """

    id: str
    channels: np.ndarray
    kind: ScanKind
    pixel_mm: tuple[float, float] = DEFAULT_PIXEL_MM
    bit_depth: int = 16
    energies: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = ScanKind(self.kind)
        object.__setattr__(self, "kind", kind)
        ch = self.channels
        if not isinstance(ch, np.ndarray):
            raise ScanError(f"scan {self.id!r}: channels must be a numpy array, got {type(ch).__name__}")
        if ch.dtype != np.float32:
            raise ScanError(f"scan {self.id!r}: channels must be float32, got {ch.dtype}")
        if ch.ndim != 3 or ch.shape[0] != CHANNELS_OF_KIND[kind]:
            raise ScanError(
                f"scan {self.id!r}: a {kind.value} scan needs shape ({CHANNELS_OF_KIND[kind]}, H, W), got {ch.shape}"
            )
        h, w = ch.shape[1:]
        if h < 8 or w < 8 or h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
            raise ScanError(f"scan {self.id!r}: absurd image size {w}x{h} pixels")
        if not (len(self.pixel_mm) == 2 and all(0.01 <= float(p) <= 100.0 for p in self.pixel_mm)):
            raise ScanError(
                f"scan {self.id!r}: pixel spacing must be two values in [0.01, 100] mm, got {self.pixel_mm}"
            )
        if self.bit_depth not in (8, 16):
            raise ScanError(f"scan {self.id!r}: bit depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return int(self.channels.shape[1])

    @property
    def width(self) -> int:
        return int(self.channels.shape[2])

    @property
    def is_physical(self) -> bool:
        """True when the channels are transmission (so attenuation is meaningful)."""
        return self.kind is not ScanKind.RGB

    def attenuation(self) -> np.ndarray:
        """Attenuation A = -ln T per channel, float32 (C, H, W).

        Raises:
            ScanError: for pseudo-colour scans, which carry no transmission.
        """
        if not self.is_physical:
            raise ScanError(f"scan {self.id!r}: a pseudo-colour scan has no attenuation")
        return -np.log(np.clip(self.channels, MIN_TRANSMISSION, 1.0))


def log_view(transmission: np.ndarray, *, max_attenuation: float = 8.0) -> np.ndarray:
    """An 8-bit greyscale picture of transmission (float in [0, 1]) on a log scale.

    Operators look at attenuation, not linear transmission: a log scale shows light
    goods and dense steel in one picture (white = empty, black = opaque).
    """
    a = -np.log(np.clip(transmission.astype(np.float32, copy=False), MIN_TRANSMISSION, 1.0))
    v = 1.0 - np.clip(a / max_attenuation, 0, 1) ** 0.6
    return np.rint(v * 255).astype(np.uint8)
