"""What a parcel or bag holds, as the virtual baggage scanner sees it: shapes and materials.

Each item draws its own outline into areal-density maps (g/cm^2) of the basis materials of
`xray.simulate.parcel` (organic, aluminium, iron) and returns its exact box. Sizes are in
pixels of the 416 x 416 picture at ~3 mm per pixel: a phone ~50 px, a kitchen knife ~60 px,
a pistol ~50 px (the 15-80 px range of small objects in real baggage images).
Categories are the keys of `xray/goods_parcel.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

MATERIALS = ("organic", "aluminium", "iron")
Maps = dict[str, np.ndarray]
Box = tuple[int, int, int, int]

EVERYDAY = ("clothing", "shoes", "books", "cosmetics", "electronics")
CONTRABAND = ("knife", "gun", "cigarettes", "drugs")


def _rotated(points: np.ndarray, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """Points (N, 2) relative to the item's centre, rotated by `angle` (rad) and moved to `centre`."""
    c, s = np.cos(angle), np.sin(angle)
    rot = points @ np.array([[c, s], [-s, c]])
    return np.rint(rot + np.asarray(centre)).astype(np.int32)


def _rect(w: float, h: float) -> np.ndarray:
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])


def _ellipse(w: float, h: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([w / 2 * np.cos(t), h / 2 * np.sin(t)], axis=1)


class Drawing:
    """One item being drawn: polygons added to the maps, the union of their pixels its box."""

    def __init__(self, maps: Maps, centre: tuple[float, float], angle: float):
        self.maps, self.centre, self.angle = maps, centre, angle
        shape = next(iter(maps.values())).shape
        self.mask = np.zeros(shape, np.uint8)

    def add(self, material: str, points: np.ndarray, gcm2: float, *, box: bool = True) -> None:
        layer = np.zeros_like(self.mask)
        cv2.fillPoly(layer, [_rotated(points, self.angle, self.centre)], 1)
        self.maps[material] += layer * np.float32(gcm2)
        if box:
            self.mask |= layer

    def box(self) -> Box | None:
        ys, xs = np.nonzero(self.mask)
        if len(xs) == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _clothing(d: Drawing, rng: np.random.Generator) -> None:
    w, h = rng.uniform(40, 72), rng.uniform(30, 60)
    pts = _ellipse(w, h) * rng.uniform(0.85, 1.15, size=(24, 1))  # a folded garment: lumpy outline
    d.add("organic", pts, rng.uniform(1.0, 2.5))
    for _ in range(int(rng.integers(1, 4))):  # folds
        d.add(
            "organic",
            _rect(w * rng.uniform(0.5, 0.9), rng.uniform(3, 6)) + [0, rng.uniform(-h / 3, h / 3)],
            rng.uniform(0.5, 1.0),
            box=False,
        )


def _shoes(d: Drawing, rng: np.random.Generator) -> None:
    length, width = rng.uniform(40, 64), rng.uniform(16, 24)
    d.add("organic", _ellipse(length, width), rng.uniform(2.5, 4.5))
    d.add("organic", _rect(length * 0.8, width * 0.25), rng.uniform(1.0, 2.0), box=False)  # the sole's edge
    if rng.random() < 0.5:  # a steel shank
        d.add("iron", _rect(length * 0.3, 2.0), 0.6, box=False)


def _books(d: Drawing, rng: np.random.Generator) -> None:
    w, h = rng.uniform(26, 50), rng.uniform(34, 62)
    d.add("organic", _rect(w, h), rng.uniform(3.0, 6.0))
    d.add("organic", _rect(3.0, h) + [-w / 2 + 1.5, 0], 1.5)  # the spine


def _cosmetics(d: Drawing, rng: np.random.Generator) -> None:
    w, h = rng.uniform(14, 26), rng.uniform(28, 56)
    d.add("aluminium", _rect(w, h), rng.uniform(0.8, 1.6))  # glass walls
    d.add("organic", _rect(w * 0.8, h * 0.85), rng.uniform(2.0, 4.0))  # the liquid
    d.add("aluminium", _rect(w * 0.45, h * 0.18) + [0, -h / 2 - h * 0.08], 1.5)  # neck and cap


def _electronics(d: Drawing, rng: np.random.Generator) -> None:
    if rng.random() < 0.6:  # a phone
        w, h = rng.uniform(16, 24), rng.uniform(32, 48)
        d.add("aluminium", _rect(w, h), rng.uniform(0.8, 1.2))
        d.add("iron", _rect(w * 0.7, h * 0.45) + [0, h * 0.15], rng.uniform(0.8, 1.4))  # battery
        d.add("iron", _rect(w * 0.5, h * 0.15) + [0, -h * 0.3], 1.0)  # board and camera
    else:  # a laptop or tablet
        w, h = rng.uniform(50, 74), rng.uniform(36, 52)
        d.add("aluminium", _rect(w, h), rng.uniform(1.0, 1.6))
        d.add("iron", _rect(w * 0.8, h * 0.3) + [0, h * 0.25], rng.uniform(0.8, 1.2))  # battery cells
        d.add("iron", _rect(w * 0.3, h * 0.25) + [-w * 0.2, -h * 0.15], 0.8)  # mainboard


def _cigarettes(d: Drawing, rng: np.random.Generator) -> None:
    packs = int(rng.integers(4, 11))  # a carton: packs in a row
    pw, ph = rng.uniform(6.5, 8.0), rng.uniform(18, 24)
    for i in range(packs):
        d.add("organic", _rect(pw - 0.8, ph) + [(i - (packs - 1) / 2) * pw, 0], rng.uniform(2.2, 2.8))
    d.add("aluminium", _rect(pw * packs, ph), 0.08)  # the foil


def _knife(d: Drawing, rng: np.random.Generator) -> None:
    blade, handle, width = rng.uniform(24, 44), rng.uniform(14, 24), rng.uniform(5, 9)
    tip = np.array([[0, -width / 2], [blade, -width / 2], [blade + width, width / 2], [0, width / 2]])
    d.add("iron", tip + [-blade / 2, 0], rng.uniform(1.0, 2.0))  # 1.3-2.5 mm steel
    d.add("organic", _rect(handle, width * 1.2) + [-blade / 2 - handle / 2, 0], rng.uniform(2.0, 3.0))


def _gun(d: Drawing, rng: np.random.Generator) -> None:
    s = rng.uniform(0.75, 1.2)
    slide = _rect(46 * s, 10 * s) + [0, -6 * s]
    grip = np.array([[8, -2], [22, -2], [26, 26], [12, 26]]) * s + [-23 * s + 4 * s, 0]
    d.add("iron", slide, rng.uniform(5.0, 8.0))
    d.add("iron", grip, rng.uniform(3.0, 5.0))
    d.add("iron", _rect(8 * s, 7 * s) + [-4 * s, 3 * s], 2.0)  # trigger guard


def _drugs(d: Drawing, rng: np.random.Generator) -> None:
    w, h = rng.uniform(24, 44), rng.uniform(18, 34)
    d.add("organic", _rect(w, h), rng.uniform(4.0, 7.0))  # a pressed brick
    d.add("organic", _rect(w, 3.0), 0.8, box=False)  # tape
    d.add("organic", _rect(3.0, h), 0.8, box=False)


DRAW: dict[str, Callable[[Drawing, np.random.Generator], None]] = {
    "clothing": _clothing,
    "shoes": _shoes,
    "books": _books,
    "cosmetics": _cosmetics,
    "electronics": _electronics,
    "cigarettes": _cigarettes,
    "knife": _knife,
    "gun": _gun,
    "drugs": _drugs,
}


def draw_item(
    category: str, maps: Maps, centre: tuple[float, float], angle: float, rng: np.random.Generator
) -> Box | None:
    """Add one item to the maps; its exact box (None when nothing of it lies in the picture)."""
    d = Drawing(maps, centre, angle)
    DRAW[category](d, rng)
    return d.box()
