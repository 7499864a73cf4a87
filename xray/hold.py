"""Is the container's hold empty? Measured from attenuation, not from the model.

An empty container declared with goods is the one finding that carried over to real scans
(issue 13), and the out-of-domain guard must not take it away: a scan the model cannot read
goes to review, but a hold that is empty by its physics, where the model sees no goods either,
is empty whatever the guard says.

Three facts of an empty container scan, on the whole-scan input's high-energy attenuation
A = -ln T (the letterboxed scan, padding left out):

- **one thin floor band**: runs of rows under the roof line that are dark across most of the
  width (their 25th percentile); the floor is the heaviest run reaching the bottom 40 % of the
  height, measured whole. A floor run thicker than `MAX_FLOOR_BAND` is a load lying on the floor,
  and a second run `MIN_RUN_ROWS` thick or more is a load beside it (plates on dunnage); a
  chassis rail below the floor is thinner;
- **no load in any column**: each column's 95th percentile of A over the hold, from 20 % of the
  height (under the roof line) down to just above the floor band; the load is the 95th
  percentile of those over the columns 5-95 % of the width. The first sees goods that fill a
  twentieth of the hold's height and steps over the thin mid-height rail; the second steps over
  a post or two;
- **walls and nothing else**: the hold's median A is that of two steel walls: above air (a white
  page or a flat image has none) and below `MAX_WALLS` (light goods that fill the hold evenly).

Measured through the engine (session 13, `benchmarks/results/2026-11-29-hold-synthetic.py`,
`2026-11-29-hold-probe.py`, `2026-11-29-hold.md`): all 96 empty containers of the four training
profiles' test split and of the held-out mobile gantry are measured empty (load 0.14-0.57, walls
0.05-0.20), none of the 727 loaded ones, none of 54 photos, documents, baggage, noise and flat
images. Empty containers with a load drawn in are measured loaded once a layer on the floor fills
8 % of the inside height, plates on dunnage 6 %, light goods fill the hold at +0.35, or a
full-height item spans 10 % of the length. Thinner or narrower loads go unseen, so the verifier
uses the measurement only where the model sees no goods either (`xray.verify`). A pseudo-colour
export on a known palette is read back to its grey picture (`xray.sources.palette`) and measured:
all 15 empties of the pseudo-colour test split measured empty (load 0.026-0.047), none of its 142
loaded ones (load 1.04 and up; session 22). Material-coded colour is not transmission and is not
measured; nor is a scan whose display the guard cannot check (`UNREAD_WHEN_OFF`): an inverted
display shows a dense load bright.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xray.detection import DomainCheck, HoldCheck

HOLD_TOP = 0.20  # of the height: the hold starts under the roof line
HOLD_COLS = (0.05, 0.95)  # of the width: inside the end frames and the start and end bands
FLOOR_ROWS = 0.60  # the floor band reaches into the bottom 40 % of the height
# Of the height: the thickest floor band of an empty container (0.062 measured, an 8-bit export
# cropped at the floor). A thicker dark run at the bottom is a load lying on the floor.
MAX_FLOOR_BAND = 0.08
FLOOR_EDGE = 0.01  # of the height: the rows just above the floor band, left out of the hold
LOAD_ROWS_Q = 95  # each column's percentile over the hold's rows
LOAD_COLS_Q = 95  # the percentile of those over the columns
EMPTY_LOAD = 0.60  # the hold's load at or below which no column holds goods
# The hold's median A above which something was in the beam. Physically two walls (T < 0.97: A 0.05-0.20
# in the portal and 8-bit exports), but an export stretched up to its 99-99.9th percentile clips an
# empty hold to near white: 0.010-0.029 in pseudo-colour exports read back to grey (48 empties, JET and
# TURBO). A blank page reads 0.0.
MIN_WALLS = 0.008
MAX_WALLS = 0.30  # and below which nothing but walls is in the beam (empties: 0.05-0.20; light goods fill it)
MIN_RUN_ROWS = 2  # (sampled rows) a dark run this thick besides the floor is a load: plates on dunnage
MIN_FLOOR = 1.0  # the floor band's A at or above which there is a floor (T < 0.37)
MIN_ROWS, MIN_COLS = 16, 32  # a smaller input is not measured
STRIDE = 2  # every 2nd row and column: the measures are percentiles of broad areas
# Guard measures (`xray.domain`) that, off, mean the grey levels may not be attenuation: an
# inverted display shows a dense load bright. On the deliberately broken profile (inverted), 13 of
# 300 loaded scans measured "empty", every one with the grey-level profile off; true empties
# elsewhere (the held-out gantry included) were off for other measures when at all. A guard that
# does not compare the profile cannot tell, and the engine then does not measure the hold.
UNREAD_WHEN_OFF = frozenset({"profile"})


@dataclass(frozen=True)
class FloorBand:
    """The floor band among the runs of rows under the roof line that are dark (their 25th
    percentile at least `MIN_FLOOR`) across most of the width."""

    rows: tuple[int, int] | None  # (first, last), inclusive: the heaviest run reaching the bottom 40 %
    darkest: float  # its darkest row's 25th percentile of A
    others: int  # other runs at least `MIN_RUN_ROWS` thick: loads, not a chassis rail


def floor_band(a: np.ndarray) -> FloorBand:
    """The floor band of an attenuation image (rows as sampled), and how many other thick dark runs it has."""
    h = a.shape[0]
    top = int(HOLD_TOP * h)
    rows = np.percentile(a[top:], 25, axis=1)
    dark = np.concatenate([[False], rows >= MIN_FLOOR, [False]])
    edges = np.flatnonzero(np.diff(dark.astype(np.int8)))
    runs = [(int(f), int(e) - 1) for f, e in zip(edges[::2], edges[1::2], strict=True)]  # in rows[]
    low = [r for r in runs if top + r[1] >= int(FLOOR_ROWS * h)]
    if not low:
        return FloorBand(None, 0.0, 0)
    first, last = max(low, key=lambda r: float(rows[r[0] : r[1] + 1].sum()))
    others = sum(1 for r in runs if r != (first, last) and r[1] - r[0] + 1 >= MIN_RUN_ROWS)
    return FloorBand((top + first, top + last), float(rows[first : last + 1].max()), others)


def measure_hold(attenuation: np.ndarray) -> HoldCheck | None:
    """The hold measures of a (H, W) high-energy attenuation image (the scan, letterboxed
    padding removed); None when it is too small to place the hold in or not finite."""
    full = np.asarray(attenuation, np.float32)
    if full.ndim != 2 or full.shape[0] < MIN_ROWS or full.shape[1] < MIN_COLS or not np.isfinite(full).all():
        return None
    a = full[::STRIDE, ::STRIDE]
    h, w = a.shape
    found = floor_band(a)
    band = found.rows
    top = int(HOLD_TOP * h)
    # Without a floor the hold runs to the bottom: measured, but never empty.
    # The floor's upper edge (rows a little less dark than the band) belongs to it, not to the hold.
    end = max(top + 2, band[0] - max(1, round(FLOOR_EDGE * h))) if band else h
    c0, c1 = int(HOLD_COLS[0] * w), int(HOLD_COLS[1] * w)
    hold = a[top:end, c0:c1]
    load = float(np.percentile(np.percentile(hold, LOAD_ROWS_Q, axis=0), LOAD_COLS_Q))
    walls = float(np.median(hold))
    thickness = (band[1] - band[0] + 1) / h if band else 0.0
    empty = (
        load <= EMPTY_LOAD
        and MIN_WALLS <= walls <= MAX_WALLS
        and band is not None
        and thickness <= MAX_FLOOR_BAND
        and not found.others
    )
    return HoldCheck(
        empty=empty,
        load=round(load, 4),
        walls=round(walls, 4),
        floor=round(found.darkest, 4),
        floor_band=round(thickness, 4),
        region=(float(c0 * STRIDE), float(top * STRIDE), float(c1 * STRIDE), float(end * STRIDE)),
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
