"""The evidence picture: a scan with its detections coloured by what the verdict made of them.

It only renders the verdict: the boxes its goods table lists (those reaching the
presence threshold) and those its findings cite, red for the categories a mismatch
finding names, green for the rest. A banner on top carries the channel, the verdict,
the risk and the findings; a legend explains the colours.
"""

from __future__ import annotations

import cv2
import numpy as np

from xray.goods import default_goods_table
from xray.scan import Scan, log_view
from xray.verdict import Channel, FindingKind, Verdict

CHANNEL_BGR = {Channel.GREEN: (60, 160, 40), Channel.YELLOW: (0, 200, 240), Channel.RED: (40, 40, 220)}
DECLARED_BGR = (60, 180, 60)
UNDECLARED_BGR = (40, 40, 230)
HOLD_BGR = (200, 120, 0)  # the measured hold of an empty finding: blue, unlike any goods frame
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def scan_picture(scan: Scan) -> np.ndarray:
    """A BGR picture of a scan: log-scale high energy, or the pseudo-colour itself."""
    if scan.is_physical:
        return cv2.cvtColor(log_view(scan.channels[0]), cv2.COLOR_GRAY2BGR)
    rgb = np.rint(np.clip(scan.channels.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def draw_overlay(scan: Scan, verdict: Verdict, *, width: int | None = None) -> np.ndarray:
    """The scan with the verdict's evidence drawn over it, as a BGR uint8 image.

    Args:
        scan: The scan the verdict is about.
        verdict: The verdict (its goods table, detections and findings).
        width: Resize the picture to this width (default: scan width).
    """
    table = default_goods_table()
    img = scan_picture(scan)
    flagged = {
        f.category
        for f in verdict.findings
        if f.kind in (FindingKind.UNDECLARED, FindingKind.SUBSTITUTION, FindingKind.FALSE_EMPTY)
    }
    thick = max(2, scan.width // 600)
    scale_txt = max(0.5, scan.width / 2400)
    # Keyed by category too: the head scores every class at one place, so another class's
    # box can have the very coordinates a finding cites.
    drawn = {(f.category, tuple(b)) for f in verdict.findings for b in f.evidence}
    drawn |= {(g.category, tuple(b)) for g in verdict.goods for b in g.boxes}
    shown = [d for d in verdict.detections if (d.category, tuple(d.box)) in drawn]
    # Strongest last, so that its frame is on top; all labels after all frames, so none is hidden.
    shown.sort(key=lambda d: d.score)
    colours = [UNDECLARED_BGR if d.category in flagged else DECLARED_BGR for d in shown]
    for d, colour in zip(shown, colours):
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick)
    labels = [f"{d.category} {d.score:.2f}" for d in shown]
    sizes = [cv2.getTextSize(t, _FONT, scale_txt, 1)[0] for t in labels]
    order = range(len(shown) - 1, -1, -1)  # strongest first: it gets the best place
    places = label_places(
        [shown[i].box for i in order], [(sizes[i][0] + 6, sizes[i][1] + 8) for i in order], img.shape[:2]
    )
    for i, (lx, ly, lw, lh) in zip(order, places):
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), colours[i], -1)
        cv2.putText(img, labels[i], (lx + 3, ly + lh - 5), _FONT, scale_txt, (255, 255, 255), 1, cv2.LINE_AA)
    hold = verdict.hold
    empty_finding = any(f.kind is FindingKind.EMPTY for f in verdict.findings)
    if hold is not None and hold.empty and hold.region is not None and empty_finding:
        # The evidence of an empty finding is the measurement itself: the hold that was measured.
        x1, y1, x2, y2 = (int(round(v)) for v in hold.region)
        cv2.rectangle(img, (x1, y1), (x2, y2), HOLD_BGR, thick)
        cv2.putText(
            img,
            "hold measured empty",
            (x1 + 6, y1 + int(30 * scale_txt)),
            _FONT,
            scale_txt,
            HOLD_BGR,
            max(1, thick // 2),
            cv2.LINE_AA,
        )
    if width:
        img = cv2.resize(img, (width, int(round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
    w = img.shape[1]
    s = max(0.5, w / 1800)
    line_h = int(34 * s)
    lines = [
        f"{verdict.channel.value.upper()}  {verdict.verdict.value}   risk {verdict.risk:.2f}   "
        f"declared: {', '.join(verdict.declared) or 'empty'}"
    ]
    lines += [f"- {f.kind.value}: {f.detail} ({f.confidence:.2f})" for f in verdict.findings[:4]]
    banner = np.full((line_h * len(lines) + 10, w, 3), 255, np.uint8)
    cv2.rectangle(banner, (0, 0), (w, line_h + 4), CHANNEL_BGR[verdict.channel], -1)
    for i, text in enumerate(lines):
        colour = (255, 255, 255) if i == 0 else (20, 20, 20)
        cv2.putText(
            banner, text, (10, int(line_h * (i + 0.75))), _FONT, 0.8 * s, colour, max(1, int(2 * s)), cv2.LINE_AA
        )
    legend = np.full((line_h, w, 3), 255, np.uint8)
    x = 10
    for colour, text in ((DECLARED_BGR, "declared / explained"), (UNDECLARED_BGR, "undeclared")):
        cv2.rectangle(legend, (x, 6), (x + line_h - 12, line_h - 6), colour, -1)
        cv2.putText(legend, text, (x + line_h, int(line_h * 0.7)), _FONT, 0.6 * s, (20, 20, 20), 1, cv2.LINE_AA)
        x += int(320 * s)
    names = ", ".join(f"{table[c].name}" for c in sorted(c for c in flagged if c is not None) if c in table.keys)
    if names:
        cv2.putText(legend, names, (x, int(line_h * 0.7)), _FONT, 0.6 * s, UNDECLARED_BGR, 1, cv2.LINE_AA)
    return np.vstack([banner, img, legend])


def label_places(
    boxes: list[tuple[float, float, float, float]], sizes: list[tuple[int, int]], shape: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Where each box's label goes, as (x, y, w, h), in the order given (first served first).

    A label sits just above its box's top-left corner; where that would cover a label
    already placed, or leave the picture, it moves down along the box's left edge, one
    label height at a time, until it is clear (or the box ends).
    """
    height, width = shape
    placed: list[tuple[int, int, int, int]] = []
    for (x1, y1, _, y2), (w, h) in zip(boxes, sizes):
        x = min(max(0, round(x1)), max(0, width - w))
        top = round(y1) - h
        y = max(0, top)
        for candidate in range(top, max(top, round(y2) - h) + 1, h):
            if candidate < 0 or candidate + h > height:
                continue
            if not any(
                x < px + pw and px < x + w and candidate < py + ph and py < candidate + h for px, py, pw, ph in placed
            ):
                y = candidate
                break
        placed.append((x, y, w, h))
    return placed
