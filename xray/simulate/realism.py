"""Scene realism for profiled scans: the container structure and load texture real scans show.

Real radiographs show strong container structure (posts and corrugation every few
tens of centimetres, a rail at mid height, a heavy floor band over cross-members) and
goods that are dark masses with texture inside (bone and fat in meat, grain settling
in sacks, contents in cartons, pallet decks between stacked layers). The default
simulator draws neither; profiles with `scene.strong_structure` / `scene.dense_loads`
add them on top of the same scene.
"""

from __future__ import annotations

import cv2
import numpy as np

from xray.simulate.canvas import Canvas
from xray.simulate.container import ContainerSpec, Hold, container_bounds

Box = tuple[int, int, int, int]

# Categories packed as cartons or bales on pallets: their stacks show pallet decks between layers.
PALLETISED = frozenset({"tobacco", "electronics", "fruit_veg", "beverages", "frozen_food", "textiles", "paper"})


def draw_structure(canvas: Canvas, spec: ContainerSpec, hold: Hold, rng: np.random.Generator) -> None:
    """Side-wall posts and corrugation edges, a mid-height rail and a heavy floor band with cross-members."""
    px = canvas.px
    xf, xd, y_top, y_bot = container_bounds(spec, canvas.pixel_mm)
    # Corrugation folds crossed edge-on over a few centimetres: a vertical line every rib
    # (~278 mm), and a stronger post every few ribs where liners or logistic tracks sit.
    pitch = 278.0 / canvas.pixel_mm
    phase = rng.uniform(0, pitch)
    strength = rng.uniform(5.0, 9.0)  # g/cm^2 of steel along the beam at a fold
    for k, x in enumerate(np.arange(xf + phase, xd, pitch).astype(int)):
        post = k % int(rng.integers(3, 5)) == 0
        canvas.add_path("iron", x, y_top, x + (2 if post else 1), y_bot, (1.8 if post else 1.0) * strength / 7.87)
    # Mid-height rail (lashing rail / liner batten): an edge-on steel strip along the hold.
    y_mid = (hold.y_roof + hold.y_floor) // 2 + int(rng.integers(-px(150), px(150)))
    # A light pressed-steel profile on each wall (not a solid bar): real empty exports show it, but
    # never below grey 70 (issue 13).
    canvas.add_path("iron", xf, y_mid, xd, y_mid + max(px(40), 2), rng.uniform(1.5, 3.0) * 0.3)
    # Heavy floor band: the cross-members seen together with the bottom rails and the floor.
    canvas.add_path("iron", xf, hold.y_floor, xd, y_bot, rng.uniform(8.0, 14.0))
    for x in np.arange(xf + px(150), xd - px(150), px(rng.uniform(280, 350))).astype(int):
        canvas.add_path("iron", x, hold.y_floor, x + max(px(40), 2), y_bot, rng.uniform(20.0, 40.0))


def add_load_texture(
    canvas: Canvas, before: tuple[np.ndarray, np.ndarray], boxes: list[tuple[str, Box]], rng: np.random.Generator
) -> None:
    """Density variation inside the goods drawn since `before` (the canvas maps before loading)."""
    goods_o = canvas.organic - before[0]
    goods_i = canvas.iron - before[1]
    h, w = canvas.height, canvas.width
    # One smooth field of +-25 % over the whole load: uneven packing, settling, voids.
    cells = (max(h // 20, 2), max(w // 20, 2))
    field = 1 + 0.25 * rng.standard_normal(cells).astype(np.float32)
    field = np.clip(cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC), 0.3, 1.8)
    # Fine grain: contents inside cartons, fibres in bales.
    fine = 1 + 0.12 * rng.standard_normal((max(h // 4, 2), max(w // 4, 2))).astype(np.float32)
    field *= cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)
    canvas.organic = before[0] + goods_o * field
    canvas.iron = before[1] + goods_i * field
    px = canvas.px
    for cat, (x1, y1, x2, y2) in boxes:
        if cat in PALLETISED and y2 - y1 > px(1200):
            # Pallets stacked two or three high: a wooden deck between the layers.
            levels = int(rng.integers(2, 4))
            for k in range(1, levels):
                y = y2 - (y2 - y1) * k // levels
                canvas.add_path("carbon", x1, y, x2, y + max(px(60), 2), 150.0, density=0.55)
        if cat == "frozen_food":
            # Bone in meat blocks: small dense lumps scattered through the load.
            n = int((x2 - x1) * (y2 - y1) / max(px(200) ** 2, 1))
            for _ in range(min(n, 400)):
                u, v = int(rng.integers(x1, max(x1 + 1, x2 - 3))), int(rng.integers(y1, max(y1 + 1, y2 - 3)))
                s = int(rng.integers(2, max(3, px(60))))
                canvas.add("aluminium", u, v, u + s, v + s, rng.uniform(5.0, 25.0))  # calcium-like: aluminium basis
