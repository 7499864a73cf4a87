"""Exports of a scan as a scanner's software writes them: crop, resample, 8-bit display curve, colour, text.

Everything takes transmission (E, H, W) in [0, 1] and the goods boxes, and keeps the
boxes exact in the exported pixel grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from xray.simulate.artifacts import FLOOR
from xray.simulate.profile import ScannerProfile, ScanSettings
from xray.sources.palette import PALETTES

Box = tuple[int, int, int, int]


def crop(
    t: np.ndarray, boxes: list[tuple[str, Box]], x0: int, y0: int, x1: int, y1: int
) -> tuple[np.ndarray, list[tuple[str, Box]]]:
    """The window [x0, x1) x [y0, y1) (clipped to the scan); boxes shifted and clipped to it."""
    h, w = t.shape[1:]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = []
    for cat, (a, b, c, d) in boxes:
        a, b, c, d = max(a, x0) - x0, max(b, y0) - y0, min(c, x1) - x0, min(d, y1) - y0
        if c > a and d > b:
            out.append((cat, (a, b, c, d)))
    return np.ascontiguousarray(t[:, y0:y1, x0:x1]), out


def _axis_span(a: int, b: int, s: float, n: int) -> tuple[int, int]:
    """Output pixels [a', b') that the source pixels [a, b) reach when one axis is scaled by s (n output pixels).

    Shrinking (area average): output j covers source [j / s, (j + 1) / s). Growing
    (bilinear): output j samples source (j + 0.5) / s - 0.5 and its two neighbours.
    """
    if s < 1:
        lo, hi = int(np.floor(a * s)), int(np.ceil(b * s))
    else:
        lo, hi = int(np.floor((a - 0.5) * s - 0.5)) + 1, int(np.ceil((b + 0.5) * s - 0.5))
    return max(lo, 0), min(hi, n)


def resample(
    t: np.ndarray, boxes: list[tuple[str, Box]], scale_rows: float, scale_cols: float
) -> tuple[np.ndarray, list[tuple[str, Box]]]:
    """Resize by (rows, columns) factors, one axis at a time; a box keeps every output pixel its goods reach."""
    h, w = t.shape[1:]
    nh, nw = max(int(round(h * scale_rows)), 1), max(int(round(w * scale_cols)), 1)
    sy, sx = nh / h, nw / w
    out = t
    if nw != w:
        interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
        out = np.stack([cv2.resize(ch, (nw, h), interpolation=interp) for ch in out])
    if nh != h:
        interp = cv2.INTER_AREA if sy < 1 else cv2.INTER_LINEAR
        out = np.stack([cv2.resize(ch, (nw, nh), interpolation=interp) for ch in out])
    scaled = []
    for cat, (a, b, c, d) in boxes:
        x1, x2 = _axis_span(a, c, sx, nw) if nw != w else (a, c)
        y1, y2 = _axis_span(b, d, sy, nh) if nh != h else (b, d)
        if x2 > x1 and y2 > y1:
            scaled.append((cat, (x1, y1, x2, y2)))
    return out, scaled


def display_8bit(t: np.ndarray, profile: ScannerProfile, settings: ScanSettings) -> np.ndarray:
    """The 8-bit picture (E, H, W) of a scan: per-scan contrast stretch on the high energy, then the curve."""
    sample = t[0, ::4, ::4]
    lo, hi = (float(v) for v in np.percentile(sample, settings.stretch))
    lo = max(lo, settings.black_level)
    hi = max(hi, lo + 1e-4)
    curve = profile.display.curve
    if curve == "log":
        a_lo, a_hi = -np.log(max(hi, float(FLOOR))), -np.log(max(lo, float(FLOOR)))
        v = 1 - (-np.log(np.maximum(t, FLOOR)) - a_lo) / max(a_hi - a_lo, 1e-4)
    else:
        v = (t - lo) / (hi - lo)
    v = np.clip(v, 0.0, 1.0)
    if curve == "gamma":
        v = v ** np.float32(settings.gamma)
    if profile.display.invert:
        v = 1 - v
    return np.rint(v * 255).astype(np.uint8)


def pseudo_colour(grey: np.ndarray, palette: str = "jet") -> np.ndarray:
    """A viewer's false-colour rendering of one 8-bit picture through a colour table: BGR (H, W, 3)."""
    return cv2.applyColorMap(grey, PALETTES[palette])


def burn_in(img: np.ndarray, rng: np.random.Generator, scan_id: str) -> np.ndarray:
    """Burned-in caption (site, date, scan id) and a few operator markers, as some viewers export them."""
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    white = (255, 255, 255) if img.ndim == 3 else 255
    scale = max(h / 900, 0.35)
    day = f"2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
    text = f"SITE {int(rng.integers(1, 40)):02d}  {day}  {scan_id}"
    y = int(rng.choice([int(30 * scale) + 4, h - 8]))
    cv2.putText(img, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, white, max(int(2 * scale), 1), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # crosses and arrows an operator left on the picture
        cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(10 + 20 * scale)
        cv2.drawMarker(img, (cx, cy), white, cv2.MARKER_CROSS, r, max(int(2 * scale), 1))
    return img


def encode(img: np.ndarray, quality: int | None) -> tuple[bytes, str]:
    """Encoded file bytes and their suffix: JPEG at `quality`, else PNG (8 or 16 bit as given)."""
    if quality is not None:
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        suffix = ".jpg"
    else:
        ok, data = cv2.imencode(".png", img)
        suffix = ".png"
    if not ok:
        raise OSError(f"encoder failed for pixels of shape {img.shape}")
    return data.tobytes(), suffix
