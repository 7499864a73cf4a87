"""False-colour display palettes: a grey picture exported through one is read back to its grey level.

Viewers export single-energy scans through a sequential false-colour map, JET above all. Read as
luminance, such a picture is scrambled: JET's two ends are both dark (navy and maroon), so the air of
a hold (maroon) reads as dense as steel, and mid-grey goods (cyan, yellow) read as nearly empty. A
colour picture whose coloured pixels lie on one known palette is the grey picture it renders, and is
read back through that palette's inverse. Material-coded pseudo-colour (hue from the dual-energy ratio,
brightness from transmission, as baggage and many cargo viewers show it) lies on no such curve and
stays colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

# The sequential maps viewers export with (OpenCV's, which follow matplotlib's and MATLAB's).
# Maps with grey or repeated stretches (bone, pink, ocean, hsv) are left out: they do not invert.
PALETTES = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "rainbow": cv2.COLORMAP_RAINBOW,
    "hot": cv2.COLORMAP_HOT,
    "parula": cv2.COLORMAP_PARULA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "plasma": cv2.COLORMAP_PLASMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
}
# The inverse is a lookup over colours quantised to 6 bits a channel (262,144 entries): a step of
# 4 levels is well inside the colour error of a JPEG export, and the lookup is one gather a pixel.
BITS = 6
# A coloured pixel is on the palette within this RGB distance (0-255 units). JPEG at quality 75-95
# keeps 63-94 % of a JET export's pixels this close (its chroma subsampling smears thin stripes);
# material-coded pictures keep 0-3 % close to any palette (measured on the simulator's of both).
ON_PALETTE = 20.0
# A picture is read through the palette that holds the most of its coloured pixels, when it holds
# at least this share of them: JET exports of the simulator's calibration set hold 0.45 or more
# (heavy stripes smeared by JPEG), colour photos, noise and material-coded baggage 0.12 at most.
MIN_SHARE = 0.3
# Grey pixels (white air, black starvation, burned-in text) say nothing of the palette: a map
# that ends in black or white would otherwise claim any picture with much air.
GREY_SPREAD = 12.0
SAMPLE_STRIDE = 4  # every 4th row and column decide which palette, if any
# The on-palette pixels must span this many of the palette's 256 levels (1st to 99th percentile): a
# picture of one or two flat colours (a red logo) lies on some palette but renders no grey picture.
# The simulator's JET and TURBO exports span 112-232 levels (40 empty and loaded containers).
MIN_SPAN = 48


@dataclass(frozen=True)
class Palette:
    """One palette's inverse: for every quantised colour, the nearest palette level and its distance."""

    name: str
    level: np.ndarray  # uint8 (2 ** (3 * BITS),)
    distance: np.ndarray  # float32 (2 ** (3 * BITS),)

    @staticmethod
    @cache
    def named(name: str) -> Palette:
        """The inverse of a palette of `PALETTES` (built once a process, in tens of ms)."""
        import faiss  # only where a colour picture is read: the simulator names palettes without it

        rgb = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], PALETTES[name])[:, 0, ::-1]
        step = 1 << (8 - BITS)
        centres = (np.arange(1 << BITS, dtype=np.float32) * step + (step - 1) / 2).astype(np.float32)
        grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 3)
        index = faiss.IndexFlatL2(3)
        index.add(np.ascontiguousarray(rgb, dtype=np.float32))
        d2, nearest = index.search(np.ascontiguousarray(grid), 1)
        return Palette(name, nearest[:, 0].astype(np.uint8), np.sqrt(np.maximum(d2[:, 0], 0)).astype(np.float32))

    def share_on(self, keys: np.ndarray) -> float:
        """Share of the pixels with these colour keys (`colour_keys`) that lie on this palette."""
        return float(np.mean(self.distance[keys] <= ON_PALETTE)) if keys.size else 0.0

    def grey(self, keys: np.ndarray) -> np.ndarray:
        """The grey level (float32 in [0, 1]) each colour key renders: the nearest palette level,
        also for the few pixels a JPEG pushed off the curve."""
        return self.level[keys].astype(np.float32) / np.float32(255.0)


def colour_keys(rgb: np.ndarray) -> np.ndarray:
    """The quantised-colour key of every pixel of uint8 RGB planes (3, H, W): int32 (H, W)."""
    q = [np.right_shift(c, 8 - BITS).astype(np.int32) for c in rgb]
    return (q[0] << (2 * BITS)) | (q[1] << BITS) | q[2]


def read_back(channels: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The palette a colour picture (float32 RGB (3, H, W) in [0, 1]) was exported through and the
    grey picture it renders (float32 (H, W) in [0, 1]); None when it lies on no known palette."""
    # Back to the file's 8-bit levels in one saturating, rounding pass (four numpy passes cost 10 ms a scan).
    c = np.ascontiguousarray(channels, dtype=np.float32)
    flat = cv2.max(c.reshape(-1, c.shape[-1]), 0.0)  # convertScaleAbs would fold a negative level up
    rgb = cv2.convertScaleAbs(flat, alpha=255.0).reshape(c.shape)
    sample = rgb[:, ::SAMPLE_STRIDE, ::SAMPLE_STRIDE]
    coloured = (sample.max(axis=0).astype(np.int16) - sample.min(axis=0)) > GREY_SPREAD
    keys = colour_keys(sample)[coloured]
    shares = {name: Palette.named(name).share_on(keys) for name in PALETTES}
    best = max(shares, key=shares.__getitem__)
    if shares[best] < MIN_SHARE:
        return None
    palette = Palette.named(best)
    levels = palette.level[keys[palette.distance[keys] <= ON_PALETTE]]
    lo, hi = np.percentile(levels, [1, 99])
    if hi - lo < MIN_SPAN:
        return None
    return best, palette.grey(colour_keys(rgb))
