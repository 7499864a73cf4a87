"""Is the container's hold empty? Measured from attenuation, not from the model.

An empty container declared with goods is the one finding that carried over to real scans
(issue 13), and the out-of-domain guard must not take it away: a scan the model cannot read
goes to review, but a hold that is empty by its physics is empty whatever the model reads.

Three facts of an empty container scan, on the whole-scan input's high-energy attenuation
A = -ln T (the letterboxed scan, padding left out):

- **no load in any column**: the 95th percentile, over the columns of the hold (rows 20-75 %
  of the height, columns 5-95 %), of each column's median A. The median steps over the
  mid-height rail and the roof and floor lines; the 95th percentile over a post or two;
- **walls**: the hold's median A is above that of air: the beam crossed two steel walls
  (a white page or a flat image has none);
- **a floor**: a row in the bottom 40 % of the height that is dark across most of its width
  (its 25th percentile): the floor band, cross-members and chassis.

Measured through the engine (session 13, `/work/s13/hold_engine.py`, `gantry_empties.py`): the
hold's load is 0.09-0.24 for the 60 empty containers of the four training profiles' test split
and 0.16-0.30 for the 43 of 300 held-out mobile-gantry scans, and 0.39 or more for every one of
the 780 loaded ones (the lowest: cars in an 8-bit export), so `EMPTY_LOAD` sits between. Of the
54 photos, documents, baggage images and flat or noisy images (`xray.foreign`), none is measured
empty. Pseudo-colour renderings are not transmission and are not measured. An inverted display
shows a dense load bright (`UNREAD_WHEN_OFF`).
"""

from __future__ import annotations

import numpy as np

from xray.detection import DomainCheck, HoldCheck

HOLD_ROWS = (0.20, 0.75)  # of the height: under the roof line, above the floor band
HOLD_COLS = (0.05, 0.95)  # of the width: inside the end frames and the start and end bands
FLOOR_ROWS = 0.60  # the floor band lies in the bottom 40 % of the height
EMPTY_LOAD = 0.34  # the hold's load at or below which no column holds goods
MIN_WALLS = 0.03  # the hold's median A above which the beam crossed walls (T < 0.97)
MIN_FLOOR = 1.0  # the floor band's A at or above which there is a floor (T < 0.37)
MIN_ROWS, MIN_COLS = 16, 32  # a smaller input is not measured
STRIDE = 2  # every 2nd row and column: the measures are medians and percentiles of broad areas
# Guard measures (`xray.domain`) that, off, mean the grey levels may not be attenuation: an
# inverted display shows a dense load bright. On the deliberately broken profile (inverted), 13 of 300
# loaded scans measured "empty", every one with the grey-level profile off; true empties elsewhere
# (the held-out gantry included) were off for other measures when at all.
UNREAD_WHEN_OFF = frozenset({"profile"})


def measure_hold(attenuation: np.ndarray) -> HoldCheck | None:
    """The hold measures of a (H, W) high-energy attenuation image (the scan, letterboxed
    padding removed); None when it is too small to place the hold in."""
    a = np.asarray(attenuation, np.float32)[::STRIDE, ::STRIDE]
    h, w = a.shape
    if h < MIN_ROWS // STRIDE or w < MIN_COLS // STRIDE:
        return None
    hold = a[int(HOLD_ROWS[0] * h) : int(HOLD_ROWS[1] * h), int(HOLD_COLS[0] * w) : int(HOLD_COLS[1] * w)]
    load = float(np.percentile(np.median(hold, axis=0), 95))
    walls = float(np.median(hold))
    floor = float(np.percentile(a[int(FLOOR_ROWS * h) :], 25, axis=1).max())
    return HoldCheck(
        empty=load <= EMPTY_LOAD and walls >= MIN_WALLS and floor >= MIN_FLOOR,
        load=round(load, 4),
        walls=round(walls, 4),
        floor=round(floor, 4),
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
