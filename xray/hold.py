"""Is the container's hold empty? Measured from attenuation, not from the model.

An empty container declared with goods is the one finding that carried over to real scans
(issue 13), and the out-of-domain guard must not take it away: a scan the model cannot read
goes to review, but a hold that is empty by its physics is empty whatever the model reads.

Three facts of an empty container scan, on the whole-scan input's high-energy attenuation
A = -ln T (the letterboxed scan, padding left out):

- **a floor**: of the runs of rows in the bottom 40 % of the height that are dark across most of
  the width (their 25th percentile), the heaviest: the floor band. A bare floor is thin; a run
  thicker than `MAX_FLOOR_BAND` is a load lying on the floor;
- **no load in any column**: each column's 95th percentile of A over the hold, from 20 % of the
  height (under the roof line) down to just above the floor band; the load is the 95th
  percentile of those over the columns 5-95 % of the width. The first sees goods that fill a
  twentieth of the hold's height and steps over the thin mid-height rail; the second steps over
  a post or two;
- **walls**: the hold's median A is above that of air: the beam crossed two steel walls
  (a white page or a flat image has none).

Measured through the engine (session 13, `benchmarks/results/2026-11-29-hold-probe.py`,
`2026-11-29-hold.md`): all 96 empty containers of the four training profiles' test split and of
the held-out mobile gantry are measured empty (load 0.14-0.57), none of the 727 loaded ones (load
2.6 or more), none of 54 photos, documents, baggage, noise and flat images. What it cannot see
(empty containers with a load drawn in): a layer on the floor under about 6 % of the inside height
(about 15 cm), or a single full-height item under about 5 % of the length. The verifier therefore
lets an in-domain model that sees the declared goods stand (`xray.verify`). Pseudo-colour
renderings are not transmission and are not measured; nor is a scan whose display the guard
cannot check (`UNREAD_WHEN_OFF`): an inverted display shows a dense load bright.
"""

from __future__ import annotations

import numpy as np

from xray.detection import DomainCheck, HoldCheck

HOLD_TOP = 0.20  # of the height: the hold starts under the roof line
HOLD_COLS = (0.05, 0.95)  # of the width: inside the end frames and the start and end bands
FLOOR_ROWS = 0.60  # the floor band lies in the bottom 40 % of the height
# Of the height: the thickest floor band of an empty container (0.062 measured, an 8-bit export
# cropped at the floor). A thicker dark run at the bottom is a load lying on the floor.
MAX_FLOOR_BAND = 0.08
FLOOR_EDGE = 0.01  # of the height: the rows just above the floor band, left out of the hold
LOAD_ROWS_Q = 95  # each column's percentile over the hold's rows
LOAD_COLS_Q = 95  # the percentile of those over the columns
EMPTY_LOAD = 0.60  # the hold's load at or below which no column holds goods
MIN_WALLS = 0.03  # the hold's median A above which the beam crossed walls (T < 0.97)
MIN_FLOOR = 1.0  # the floor band's A at or above which there is a floor (T < 0.37)
MIN_ROWS, MIN_COLS = 16, 32  # a smaller input is not measured
STRIDE = 2  # every 2nd row and column: the measures are percentiles of broad areas
# Guard measures (`xray.domain`) that, off, mean the grey levels may not be attenuation: an
# inverted display shows a dense load bright. On the deliberately broken profile (inverted), 13 of
# 300 loaded scans measured "empty", every one with the grey-level profile off; true empties
# elsewhere (the held-out gantry included) were off for other measures when at all. A guard that
# does not compare the profile cannot tell, and the engine then does not measure the hold.
UNREAD_WHEN_OFF = frozenset({"profile"})


def floor_band(a: np.ndarray) -> tuple[int, int] | None:
    """(first, last) row of the floor band: of the runs of rows in the bottom 40 % that are dark
    (their 25th percentile at least `MIN_FLOOR`) across most of the width, the heaviest (the sum of
    those percentiles): the floor, not a chassis rail below it. None without one."""
    bottom = int(FLOOR_ROWS * a.shape[0])
    rows = np.percentile(a[bottom:], 25, axis=1)
    dark = np.concatenate([[False], rows >= MIN_FLOOR, [False]])
    edges = np.flatnonzero(np.diff(dark.astype(np.int8)))
    runs = list(zip(edges[::2], edges[1::2] - 1, strict=True))  # (first, last), inclusive
    if not runs:
        return None
    first, last = max(runs, key=lambda r: float(rows[r[0] : r[1] + 1].sum()))
    return bottom + int(first), bottom + int(last)


def measure_hold(attenuation: np.ndarray) -> HoldCheck | None:
    """The hold measures of a (H, W) high-energy attenuation image (the scan, letterboxed
    padding removed); None when it is too small to place the hold in or not finite."""
    full = np.asarray(attenuation, np.float32)
    if full.ndim != 2 or full.shape[0] < MIN_ROWS or full.shape[1] < MIN_COLS or not np.isfinite(full).all():
        return None
    a = full[::STRIDE, ::STRIDE]
    h, w = a.shape
    band = floor_band(a)
    top = int(HOLD_TOP * h)
    # Without a floor the hold runs to the bottom: measured, but never empty.
    # The floor's upper edge (rows a little less dark than the band) belongs to it, not to the hold.
    end = max(top + 2, band[0] - max(1, round(FLOOR_EDGE * h))) if band else h
    hold = a[top:end, int(HOLD_COLS[0] * w) : int(HOLD_COLS[1] * w)]
    load = float(np.percentile(np.percentile(hold, LOAD_ROWS_Q, axis=0), LOAD_COLS_Q))
    walls = float(np.median(hold))
    thickness = (band[1] - band[0] + 1) / h if band else 0.0
    floor = float(np.percentile(a[band[0] : band[1] + 1], 25, axis=1).max()) if band else 0.0
    return HoldCheck(
        empty=load <= EMPTY_LOAD and walls >= MIN_WALLS and band is not None and thickness <= MAX_FLOOR_BAND,
        load=round(load, 4),
        walls=round(walls, 4),
        floor=round(floor, 4),
        floor_band=round(thickness, 4),
    )


def unread_if_display_off(hold: HoldCheck | None, domain: DomainCheck | None) -> HoldCheck | None:
    """`hold`, not empty (with the reason) when the guard found the display itself off."""
    if hold is None or domain is None or not UNREAD_WHEN_OFF & set(domain.off):
        return hold
    return hold.model_copy(
        update={
            "empty": False,
            "note": "grey-level profile unlike the training scans' (inverted or re-mapped "
            "display?): the grey levels are not read as attenuation",
        }
    )
