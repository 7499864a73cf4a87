"""Where the evidence picture puts its box labels: never over one another, never off the picture."""

from __future__ import annotations

import itertools

import numpy as np

from xray.detection import Detection, Detections, HoldCheck
from xray.goods import default_goods_table
from xray.manifest import Manifest, ManifestLine
from xray.overlay import DECLARED_BGR, HOLD_BGR, UNDECLARED_BGR, draw_overlay, label_places
from xray.scan import Scan, ScanKind
from xray.verify import VerifierConfig, verify


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def test_a_label_sits_above_its_box_when_there_is_room() -> None:
    assert label_places([(100, 50, 300, 200)], [(80, 20)], (400, 600)) == [(100, 30, 80, 20)]


def test_labels_of_boxes_sharing_a_corner_do_not_cover_each_other() -> None:
    boxes = [(100, 50, 300, 200), (100, 50, 280, 190), (102, 52, 250, 150)]
    places = label_places(boxes, [(80, 20)] * 3, (400, 600))
    assert places[0] == (100, 30, 80, 20)  # the first served keeps the best place
    assert not any(overlaps(a, b) for a, b in itertools.combinations(places, 2))
    for (x1, y1, _x2, y2), (x, y, _w, h) in zip(boxes, places):
        assert x == round(x1) and y1 - h <= y <= y2  # along the box's left edge


def test_labels_stay_inside_the_picture() -> None:
    # A box at the very top and one at the right edge: the label moves inside.
    places = label_places([(10, 0, 200, 100), (590, 100, 600, 300)], [(80, 20), (80, 20)], (400, 600))
    for x, y, w, h in places:
        assert 0 <= x and x + w <= 600 and 0 <= y and y + h <= 400
    assert places[0] == (10, 0, 80, 20)


def test_both_labels_are_drawn_where_a_declared_and_an_undeclared_box_share_a_corner() -> None:
    scan = Scan(id="o", channels=np.full((2, 300, 600), 0.8, np.float32), kind=ScanKind.DUAL)
    table = default_goods_table()
    manifest = Manifest(container_id="MSCU1234565", lines=[ManifestLine(hs_code=table.hs_code_for("textiles"))])
    v = verify(Detections(detections=[Detection(box=(300, 60, 550, 280), category="textiles", score=0.9),
                                      Detection(box=(302, 62, 500, 260), category="tobacco", score=0.8)]),
               manifest, config=VerifierConfig(yellow=0.3, red=0.4))
    picture = draw_overlay(scan, v)
    legend = int(34 * max(0.5, 600 / 1800))
    rows = picture[-(300 + legend):-legend]

    def filled_rows(colour: tuple[int, int, int]) -> np.ndarray:
        # Rows where the label background fills most of a 30-px run next to the boxes' left edge.
        hit = np.all(rows[:, 306:336] == np.array(colour, np.uint8), axis=2)
        return np.where(hit.mean(axis=1) > 0.8)[0]

    green, red = filled_rows(DECLARED_BGR), filled_rows(UNDECLARED_BGR)
    assert len(green) >= 10 and len(red) >= 10  # both labels are there, and neither covers the other
    assert set(green).isdisjoint(red)


def test_an_empty_finding_from_the_hold_draws_the_hold_that_was_measured() -> None:
    scan = Scan(id="o", channels=np.full((2, 300, 600), 0.8, np.float32), kind=ScanKind.DUAL)
    table = default_goods_table()
    manifest = Manifest(container_id="MSCU1234565", lines=[ManifestLine(hs_code=table.hs_code_for("textiles"))])
    hold = HoldCheck(empty=True, load=0.2, walls=0.12, floor=3.1, floor_band=0.04, region=(30, 60, 570, 200))
    config = VerifierConfig(yellow=0.3, red=0.4)
    legend = int(34 * max(0.5, 600 / 1800))

    def frame(v) -> np.ndarray:
        rows = draw_overlay(scan, v)[-(300 + legend) : -legend]
        # The frame's left edge, at mid-height of the region: in each row, a pixel of its colour near x = 30.
        return np.all(rows[100:160, 26:35] == np.array(HOLD_BGR, np.uint8), axis=2).any(axis=1)

    empty = verify(Detections(hold=hold), manifest, config=config)
    assert empty.channel.value == "red" and frame(empty).mean() > 0.9
    # The same measurement where the model sees the declared goods: no empty finding, no frame.
    seen = verify(Detections(detections=[Detection(box=(100, 80, 400, 190), category="textiles", score=0.9)],
                             hold=hold), manifest, config=config)
    assert seen.channel.value == "green" and not frame(seen).any()
