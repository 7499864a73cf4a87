"""16-bit test pixels shared by the scan-reader tests."""

from __future__ import annotations

import numpy as np

H, W = 48, 64


def levels16(seed: int = 0) -> np.ndarray:
    """uint16 (H, W) spanning 0..65535, with odd values that 8-bit or float16 paths would lose."""
    values = np.random.default_rng(seed).integers(0, 65536, size=(H, W), dtype=np.uint16)
    values.flat[:6] = [0, 1, 12345, 32767, 65534, 65535]
    return values


def as_u16(channels: np.ndarray) -> np.ndarray:
    """Transmission in [0, 1] back to the 16-bit levels it came from."""
    return np.round(channels.astype(np.float64) * 65535).astype(np.uint16)
