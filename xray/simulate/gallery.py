"""A picture of simulated scans: one tile per scan, goods boxes drawn over a log-scale view.

`python -m xray.simulate.gallery --out gallery.png` simulates one 20-ft scan per goods
category plus an empty container; with a dataset folder it shows that dataset's first
scans instead. `--profiles docs/profiles.jpg` draws the grid of scanner profiles (rows)
by goods categories (columns), `--before-after docs/realism-before-after.jpg` the same
scan from the default scanner and from the realistic `export-8bit-jpeg` profile, `--packing
docs/packed-loads.jpg` dense loads beside packed ones (`scene.packed_loads`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from xray.goods import default_goods_table
from xray.simulate.container import container_bounds
from xray.simulate.export import encode
from xray.simulate.profile import load_profile, profile_names
from xray.simulate.render import to_display
from xray.simulate.scenarios import SimulatedScan, simulate_scan

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
]


def category_colour(category: str) -> tuple[int, int, int]:
    """A fixed BGR colour per goods category."""
    keys = default_goods_table().keys
    r, g, b = _PALETTE[keys.index(category) % len(_PALETTE)] if category in keys else (255, 255, 255)
    return b, g, r


def tile(title: str, high: np.ndarray, boxes: list[tuple[str, tuple]], width: int = 900) -> np.ndarray:
    """One scan as a BGR picture of the given width, with its boxes and a title: a log view of a
    16-bit picture, an 8-bit export (grey or pseudo-colour) as it is."""
    if high.ndim == 3:
        img = high.copy()
    else:
        img = cv2.cvtColor(to_display(high) if high.dtype == np.uint16 else high, cv2.COLOR_GRAY2BGR)
    for cat, (x1, y1, x2, y2) in boxes:
        c = category_colour(cat)
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), c, 4)
        cv2.putText(img, cat, (int(x1) + 6, int(y1) + 34), cv2.FONT_HERSHEY_SIMPLEX, 1.2, c, 3, cv2.LINE_AA)
    scale = width / img.shape[1]
    img = cv2.resize(img, (width, int(round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    bar = np.full((34, width, 3), 255, np.uint8)
    cv2.putText(bar, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    return np.vstack([bar, img])


def grid(tiles: list[np.ndarray], cols: int = 3) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = [
        cv2.copyMakeBorder(t, 0, h - t.shape[0] + 6, 0, w - t.shape[1] + 6, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        for t in tiles
    ]
    while len(padded) % cols:
        padded.append(np.full_like(padded[0], 255))
    return np.vstack([np.hstack(padded[i : i + cols]) for i in range(0, len(padded), cols)])


def category_gallery(seed: int = 7, size: str = "20ft") -> np.ndarray:
    """One simulated scan per goods category plus an empty container."""
    tiles = []
    for k, cat in enumerate(default_goods_table().keys + ["empty"]):
        if cat == "empty":
            sim = simulate_scan(seed * 1000 + k, size=size, scenario="empty")
        else:
            sim = simulate_scan(seed * 1000 + k, size=size, categories=[cat])
        tiles.append(tile(cat, sim.images[0], sim.boxes, width=620))
    return grid(tiles, cols=4)


def as_exported(sim: SimulatedScan) -> np.ndarray:
    """The BGR picture a viewer shows of a scan: the 8-bit export as its file decodes, or a log view of 16 bits."""
    img = sim.images
    if img.dtype == np.uint16:
        return cv2.cvtColor(to_display(img[0]), cv2.COLOR_GRAY2BGR)
    picture = img if img.ndim == 3 and img.shape[2] == 3 else img[0]
    data, _ = encode(picture, sim.jpeg_quality)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise OSError("the export does not decode")
    return np.asarray(decoded)


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    scale = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(
        img, (max(int(img.shape[1] * scale), 1), max(int(img.shape[0] * scale), 1)), interpolation=cv2.INTER_AREA
    )
    out = np.full((h, w, 3), 255, np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out


def _label(text: str, w: int, h: int = 22) -> np.ndarray:
    bar = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, h - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def profile_gallery(
    seed: int = 7, size: str = "20ft", cell: tuple[int, int] = (300, 150), profiles: list[str] | None = None
) -> np.ndarray:
    """Rows = scanner profiles (the default scanner first), columns = goods categories and empty; one scan each."""
    w, h = cell
    cats = default_goods_table().keys + ["empty"]
    rows = [np.hstack([_label("", 150)] + [_label(c, w) for c in cats])]
    for name in [None] + (profiles or profile_names()):
        cells = [_fit(np.full((h, 150, 3), 255, np.uint8), 150, h)]
        cv2.putText(cells[0], name or "default", (4, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        for k, cat in enumerate(cats):
            kwargs = {"scenario": "empty"} if cat == "empty" else {"categories": [cat]}
            sim = simulate_scan(seed * 1000 + k, size=size, profile=name, **kwargs)  # type: ignore[arg-type]
            cells.append(
                cv2.copyMakeBorder(
                    _fit(as_exported(sim), w - 4, h - 4), 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)
                )
            )
        rows.append(np.hstack(cells))
    return np.vstack(rows)


def before_after(seed: int = 7, category: str = "textiles", size: str = "20ft") -> np.ndarray:
    """The same seed's scan from the default scanner (top) and from the `export-8bit-jpeg` profile (bottom)."""
    before = simulate_scan(seed, size=size, categories=[category])
    after = simulate_scan(seed, size=size, categories=[category], profile="export-8bit-jpeg")
    width = 1400
    pics = []
    xf, xd, y_top, y_bot = container_bounds(before.plan.spec, before.pixel_mm)
    m = 8  # the same crop as the export's: the container and a few pixels around it
    for title, sim in (
        ("before: default simulator (16-bit, log view), cropped to the container", before),
        ("after: export-8bit-jpeg profile (as its JPEG decodes)", after),
    ):
        img = as_exported(sim)
        if sim is before:
            img = img[y_top - m : y_bot + m, xf - m : xd + m]
        img = cv2.resize(img, (width, int(round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
        pics += [_label(title, width, 30), img]
    return np.vstack(pics)


# Seeds whose 20-ft scans show each change (tyres standing in rows, timber bundles, paper reels).
PACKING_EXAMPLES = (("tyres", 42), ("furniture_wood", 40), ("paper", 40), ("firearms", 1000))


def packing_pair(category: str, seed: int, profile: str = "export-8bit-jpeg", width: int = 520) -> list[np.ndarray]:
    """One 20-ft scan as the profile draws it (dense loads) and with `scene.packed_loads`, labelled."""
    dense = load_profile(profile)
    packed = dense.with_scene(packed_loads=True)
    cells = []
    for name, p in (("dense", dense), ("packed", packed)):
        sim = simulate_scan(seed, size="20ft", categories=[category], scenario="clean", profile=p)
        img = as_exported(sim)
        img = cv2.resize(img, (width, int(round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
        cells.append(np.vstack([_label(f"{category}, {profile}: {name} loads", width), img]))
    return cells


def packing(profile: str = "export-8bit-jpeg", width: int = 520) -> np.ndarray:
    """Rows = the categories that dense loads leave half empty; left the profile as bundled, right the
    same seed with `scene.packed_loads` (tyres laced, timber dead-stacked, reels and crates to the roof)."""
    rows = []
    for category, seed in PACKING_EXAMPLES:
        dense, packed = packing_pair(category, seed, profile, width)
        rows.append(np.hstack([dense, np.full((dense.shape[0], 8, 3), 255, np.uint8), packed]))
    return np.vstack(rows)


def dataset_gallery(root: Path, split: str = "train", n: int = 6) -> np.ndarray:
    coco = json.loads((root / "annotations" / f"{split}.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    truth = {}
    for line in (root / "truth.jsonl").read_text().splitlines():
        t = json.loads(line)
        truth[t["scan_id"]] = t
    tiles = []
    for img in coco["images"][:n]:
        high = np.asarray(cv2.imread(str(root / "images" / img["file_name"]), cv2.IMREAD_UNCHANGED))
        boxes = [
            (
                names[a["category_id"]],
                (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]),
            )
            for a in coco["annotations"]
            if a["image_id"] == img["id"]
        ]
        t = truth.get(img["scan_id"], {})
        profile = f"  [{img['profile']}]" if img.get("profile") else ""
        tiles.append(
            tile(
                f"{img['scan_id']}{profile}  {t.get('scenario', '')}  declared: {', '.join(t.get('declared', [])) or 'empty'}",
                high,
                boxes,
            )
        )
    return grid(tiles, cols=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", help="dataset folder (default: one fresh scan per category)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profiles", default=None, help="also write the profiles-by-categories grid here (JPEG)")
    p.add_argument("--before-after", default=None, help="also write the before/after realism pair here (JPEG)")
    p.add_argument("--packing", default=None, help="also write dense beside packed loads here (JPEG)")
    args = p.parse_args(argv)
    for path, make in (
        (args.profiles, lambda: profile_gallery(args.seed)),
        (args.before_after, lambda: before_after(args.seed)),
        (args.packing, packing),
    ):
        if path:
            cv2.imwrite(path, make(), [cv2.IMWRITE_JPEG_QUALITY, 85])
            print(f"written {path}")
    picture = dataset_gallery(Path(args.dataset)) if args.dataset else category_gallery(args.seed)
    cv2.imwrite(args.out, picture)
    print(f"gallery written to {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
