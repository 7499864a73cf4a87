"""The `Canvas`: a scene projected along the beam, as two basis areal-density maps.

The beam crosses the container's width, so every object adds its areal density
(g/cm^2 = path length x density) to the pixels it covers. Materials are stored as
their organic/iron basis equivalents (see physics.basis_coefficients).
"""

from __future__ import annotations

import numpy as np

from xray.simulate.physics import Spectrum, basis_coefficients, material_table


class Canvas:
    """Two float32 maps (organic-equivalent, iron-equivalent), in g/cm^2.

    Args:
        height: Rows (vertical, top = up).
        width: Columns (along the container).
        pixel_mm: Pixel size in millimetres.
        spectra: The beams; the basis fit depends on them.
    """

    def __init__(self, *, height: int, width: int, pixel_mm: float, spectra: tuple[Spectrum, ...]):
        self.height, self.width, self.pixel_mm = height, width, pixel_mm
        self.organic = np.zeros((height, width), np.float32)
        self.iron = np.zeros((height, width), np.float32)
        mt = material_table()
        self.density = dict(mt.density)
        self._coef = {m: basis_coefficients(m, spectra) for m in mt.mu}

    def px(self, mm: float) -> int:
        """Millimetres to a whole number of pixels."""
        return int(round(mm / self.pixel_mm))

    def _clip(self, x0: int, y0: int, x1: int, y1: int):
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x1, self.width), min(y1, self.height)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        return (slice(cy0, cy1), slice(cx0, cx1)), (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))

    def add(self, material: str, x0: int, y0: int, x1: int, y1: int, gcm2: float | np.floating | np.ndarray) -> None:
        """Add areal density of a material to the pixel rectangle [x0, x1) x [y0, y1).

        `gcm2` is a scalar or an array of shape (y1 - y0, x1 - x0) or broadcastable to
        it; parts outside the canvas are clipped.
        """
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        clipped = self._clip(x0, y0, x1, y1)
        if clipped is None:
            return
        dst, src = clipped
        if isinstance(gcm2, np.ndarray):
            full = np.broadcast_to(gcm2, (y1 - y0, x1 - x0))
            gcm2 = full[src]
        a, b = self._coef[material]
        if a:
            self.organic[dst] += np.float32(a) * gcm2
        if b:
            self.iron[dst] += np.float32(b) * gcm2

    def add_path(
        self,
        material: str,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        path_cm: float | np.ndarray,
        density: float | None = None,
    ) -> None:
        """Add a path length (cm along the beam) of material at a density (default: solid)."""
        rho = self.density[material] if density is None else density
        self.add(material, x0, y0, x1, y1, np.float32(rho) * path_cm)


def disc_profile(radius_px: float, inner_px: float = 0.0) -> np.ndarray:
    """A (2r, 2r) mask of a disc or an annulus (1 inside, 0 outside)."""
    n = max(int(np.ceil(2 * radius_px)), 1)
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - c, yy - c)
    return ((r <= radius_px) & (r >= inner_px)).astype(np.float32)


def cylinder_profile(width_px: int) -> np.ndarray:
    """Chord length across a cylinder whose axis is vertical, relative to its diameter.

    A vertical cylinder seen from the side is a column whose path length along the
    beam falls off as sqrt(1 - x^2) towards its edges (bottles, paper rolls, drums).
    """
    x = (np.arange(width_px, dtype=np.float32) + 0.5) / width_px * 2 - 1
    return np.sqrt(np.clip(1 - x * x, 0, 1))[None, :]
