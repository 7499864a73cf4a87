"""The evidence picture: a scan with its detections coloured by what the verdict made of them.

Boxes of declared (or compatible) goods are green, undeclared goods red, goods below
the presence threshold are not drawn. A banner on top carries the channel, the
verdict, the risk and the findings; a legend explains the colours.
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
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def scan_picture(scan: Scan) -> np.ndarray:
    """A BGR picture of a scan: log-scale high energy, or the pseudo-colour itself."""
    if scan.is_physical:
        return cv2.cvtColor(log_view(scan.channels[0]), cv2.COLOR_GRAY2BGR)
    rgb = np.rint(np.clip(scan.channels.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def draw_overlay(scan: Scan, verdict: Verdict, *, present: float = 0.5, width: int | None = None) -> np.ndarray:
    """The scan with the verdict's evidence drawn over it, as a BGR uint8 image.

    Args:
        scan: The scan the verdict is about.
        verdict: The verdict (its detections and findings).
        present: Detections below this score are not drawn, unless a finding cites them
            as its evidence (a weak but suspected undeclared category).
        width: Resize the picture to this width (default: scan width).
    """
    table = default_goods_table()
    img = scan_picture(scan)
    flagged = {f.category for f in verdict.findings
               if f.kind in (FindingKind.UNDECLARED, FindingKind.SUBSTITUTION, FindingKind.FALSE_EMPTY)}
    thick = max(2, scan.width // 600)
    scale_txt = max(0.5, scan.width / 2400)
    # Keyed by category too: the head scores every class at one place, so another class's
    # box can have the very coordinates a finding cites.
    cited = {(f.category, tuple(b)) for f in verdict.findings for b in f.evidence}
    for d in verdict.detections:
        if d.score < present and (d.category, tuple(d.box)) not in cited:
            continue
        colour = UNDECLARED_BGR if d.category in flagged else DECLARED_BGR
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick)
        label = f"{d.category} {d.score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, _FONT, scale_txt, 1)
        cv2.rectangle(img, (x1, max(0, y1 - th - 8)), (x1 + tw + 6, y1), colour, -1)
        cv2.putText(img, label, (x1 + 3, y1 - 5), _FONT, scale_txt, (255, 255, 255), 1, cv2.LINE_AA)
    if width:
        img = cv2.resize(img, (width, int(round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
    w = img.shape[1]
    s = max(0.5, w / 1800)
    line_h = int(34 * s)
    lines = [f"{verdict.channel.value.upper()}  {verdict.verdict.value}   risk {verdict.risk:.2f}   "
             f"declared: {', '.join(verdict.declared) or 'empty'}"]
    lines += [f"- {f.kind.value}: {f.detail} ({f.confidence:.2f})" for f in verdict.findings[:4]]
    banner = np.full((line_h * len(lines) + 10, w, 3), 255, np.uint8)
    cv2.rectangle(banner, (0, 0), (w, line_h + 4), CHANNEL_BGR[verdict.channel], -1)
    for i, text in enumerate(lines):
        colour = (255, 255, 255) if i == 0 else (20, 20, 20)
        cv2.putText(banner, text, (10, int(line_h * (i + 0.75))), _FONT, 0.8 * s, colour, max(1, int(2 * s)), cv2.LINE_AA)
    legend = np.full((line_h, w, 3), 255, np.uint8)
    x = 10
    for colour, text in ((DECLARED_BGR, "declared / explained"), (UNDECLARED_BGR, "undeclared")):
        cv2.rectangle(legend, (x, 6), (x + line_h - 12, line_h - 6), colour, -1)
        cv2.putText(legend, text, (x + line_h, int(line_h * 0.7)), _FONT, 0.6 * s, (20, 20, 20), 1, cv2.LINE_AA)
        x += int(320 * s)
    names = ", ".join(f"{table[c].name}" for c in sorted(flagged) if c in table.keys)
    if names:
        cv2.putText(legend, names, (x, int(line_h * 0.7)), _FONT, 0.6 * s, UNDECLARED_BGR, 1, cv2.LINE_AA)
    return np.vstack([banner, img, legend])
