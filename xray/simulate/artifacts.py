"""Scanner artifacts, applied to transmission (E, H, W) in [0, 1] before export.

Each function does one mark of a real scanner with one strength (from the scan's
`ScanSettings`; 0 leaves the scan unchanged). The geometric ones (line-speed jitter)
also return how columns moved, so the goods boxes follow the pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from xray.simulate.render import gaussian_noise

Box = tuple[int, int, int, int]

FLOOR = np.float32(1.0 / 65535.0)  # one count: the darkest value a detector reports


def end_bands(t: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Dark bands where the scan starts and ends (dose ramping up and down): attenuation `strength` at the edge."""
    if strength <= 0:
        return t
    w = t.shape[-1]
    ramp = np.zeros(w, np.float32)
    for side in (0, 1):
        n = max(int(w * rng.uniform(0.02, 0.05)), 2)
        r = np.linspace(1.0, 0.0, n, dtype=np.float32) ** 2
        if side:
            ramp[-n:] = np.maximum(ramp[-n:], r[::-1])
        else:
            ramp[:n] = np.maximum(ramp[:n], r)
    return t * np.exp(-strength * ramp)[None, None, :]


def row_stripes(t: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Per-detector-row gain left after calibration: horizontal stripes (the same detector for both energies)."""
    if sd <= 0:
        return t
    gain = 1 + np.float32(sd) * np.asarray(rng.standard_normal((t.shape[1],), dtype=np.float32))
    # Detector boards of 32 rows drift together: part of the gain is shared per board.
    board = 1 + sd * rng.standard_normal(t.shape[1] // 32 + 1).astype(np.float32)
    gain *= np.repeat(board, 32)[: t.shape[1]]
    return t * gain[None, :, None]


def dead_rows(t: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Detector rows that read nothing: whole rows at the floor. Returns the scan and the dead rows."""
    n = int(round(fraction * t.shape[1]))
    if n <= 0:
        return t, np.zeros(0, int)
    rows = np.sort(rng.choice(t.shape[1], size=n, replace=False))
    t = t.copy()
    t[:, rows, :] = FLOOR
    return t, rows


def beam_profile(t: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The fan beam's dose falls off away from its centre: brighter or darker top and bottom after calibration."""
    if strength <= 0:
        return t
    h = t.shape[1]
    centre = h * rng.uniform(0.35, 0.65)
    y = (np.arange(h, dtype=np.float32) - centre) / (h / 2)
    sign = 1.0 if rng.random() < 0.7 else -1.0  # mostly a fall-off, sometimes over-corrected
    profile = np.clip(1 - sign * strength * y * y, 0.05, 2.0).astype(np.float32)
    return t * profile[None, :, None]


def scatter(t: np.ndarray, fraction: float) -> np.ndarray:
    """Scattered photons: a heavily blurred copy of the signal added as haze (lifts dark regions)."""
    if fraction <= 0:
        return t
    h, w = t.shape[1:]
    # The haze is smooth: blur a 1/8 copy (same result within the noise, 50x faster).
    small = (max(w // 8, 1), max(h // 8, 1))
    sigma = max(h / 25, 2.0) / 8
    out = np.empty_like(t)
    for k in range(t.shape[0]):
        haze = cv2.GaussianBlur(cv2.resize(t[k], small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
        out[k] = (1 - fraction) * t[k] + fraction * cv2.resize(haze, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def afterglow(t: np.ndarray, fraction: float) -> np.ndarray:
    """Scintillator afterglow: each column keeps `fraction` of the one before, smearing edges along the scan."""
    if fraction <= 0:
        return t
    a, b = np.float32(fraction), np.float32(1 - fraction)
    cols = np.ascontiguousarray(np.moveaxis(t, -1, 0)) * b  # one contiguous row per scan column
    cols[0] /= b  # the first column has nothing before it
    for x in range(1, cols.shape[0]):  # a recursive filter: each column depends on the one just computed
        cols[x] += a * cols[x - 1]
    return np.ascontiguousarray(np.moveaxis(cols, 0, -1))


def photon_starvation(t: np.ndarray, floor: float, rng: np.random.Generator) -> np.ndarray:
    """Where almost nothing gets through, counts noise of the order of `floor` dominates and the rest is clipped.

    The noise std is floor * (0.6 + 0.1 sqrt(T / floor)): a few grey levels in bright
    regions, as large as the signal where T approaches `floor`; below the floor a pixel
    reads black.
    """
    if floor <= 0:
        return t
    noise = np.stack([gaussian_noise(rng, t.shape[1:]) for _ in range(t.shape[0])])
    std = np.float32(floor) * (np.float32(0.6) + np.float32(0.1) * np.sqrt(np.maximum(t, 0) / np.float32(floor)))
    out = t + std * noise
    out[out < floor] = FLOOR
    return out


def line_speed_jitter(t: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The vehicle's speed varies during the scan: columns stretched and squeezed.

    Returns the scan and `src`, the (increasing) source column of every output column,
    for `map_boxes`.
    """
    w = t.shape[-1]
    if strength <= 0:
        return t, np.arange(w, dtype=np.float64)
    knots = max(w // 150, 2)
    speed = (
        1
        + strength
        * cv2.resize(rng.standard_normal((1, knots)).astype(np.float32), (w, 1), interpolation=cv2.INTER_CUBIC)[0]
    )
    speed = np.clip(speed, 0.3, 3.0).astype(np.float64)
    pos = np.concatenate([[0.0], np.cumsum(speed)])  # source position after each output step
    n_out = int(np.searchsorted(pos, w - 1, side="right"))
    src = pos[:n_out]
    map_x = np.broadcast_to(src.astype(np.float32)[None, :], (t.shape[1], n_out))
    map_y = np.broadcast_to(np.arange(t.shape[1], dtype=np.float32)[:, None], (t.shape[1], n_out))
    out = np.stack([cv2.remap(ch, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for ch in t])
    return out, src


def map_boxes(boxes: list[tuple[str, Box]], src: np.ndarray) -> list[tuple[str, Box]]:
    """Boxes through a column remap: the output columns that sample any of the box's source columns.

    An output column j samples source columns floor(src[j]) and floor(src[j]) + 1, so it
    shows the box [x1, x2) when x1 - 1 < src[j] < x2.
    """
    out = []
    for cat, (x1, y1, x2, y2) in boxes:
        a = int(np.searchsorted(src, x1 - 1, side="right"))
        b = int(np.searchsorted(src, x2, side="left"))
        if b > a:
            out.append((cat, (a, y1, b, y2)))
    return out


def map_column(x: float, src: np.ndarray) -> int:
    """An output column for a source column (container ends through the jitter)."""
    return int(np.searchsorted(src, x, side="left"))


def misregistration(t: np.ndarray, shift_px: float, rng: np.random.Generator) -> np.ndarray:
    """High and low energy pulses see the object a fraction of a pixel apart: the low image shifted along the scan."""
    if shift_px <= 0 or t.shape[0] < 2:
        return t
    dx = shift_px * (1.0 if rng.random() < 0.5 else -1.0)
    m = np.array([[1, 0, dx], [0, 1, 0]], np.float32)
    out = t.copy()
    out[1] = cv2.warpAffine(t[1], m, (t.shape[2], t.shape[1]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def apply_artifacts(
    t: np.ndarray, strengths: dict[str, float], rng: np.random.Generator, boxes: list[tuple[str, Box]]
) -> tuple[np.ndarray, list[tuple[str, Box]], np.ndarray]:
    """All artifacts in acquisition order; returns the scan, the boxes and the column map (for the container ends)."""
    t = beam_profile(t, strengths["beam_profile"], rng)
    t = scatter(t, strengths["scatter"])
    t = afterglow(t, strengths["afterglow"])
    t = row_stripes(t, strengths["row_stripes"], rng)
    t = end_bands(t, strengths["end_bands"], rng)
    t = photon_starvation(t, strengths["starvation"], rng)
    t, _ = dead_rows(t, strengths["dead_rows"], rng)
    t = misregistration(t, strengths["misregistration"], rng)
    t, src = line_speed_jitter(t, strengths["jitter"], rng)
    return np.clip(t, FLOOR, 1.0), map_boxes(boxes, src), src
