"""A tiny dataset in the xray format (datasets/FORMAT.md), written for tests.

Dual-energy 16-bit transmission PNGs of ~128 x 384 pixels: a container (walls, floor)
holding a few rectangles of goods whose attenuation and dual-energy ratio depend on
the category, plus COCO annotations, manifests, truth.jsonl and dataset.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from xray.goods import default_goods_table
from xray.manifest import Manifest, ManifestLine

# category -> (A_high of the goods, A_low / A_high): organic ~1.2, steel ~1.09.
GOODS = {"tobacco": (1.2, 1.2), "machinery": (2.4, 1.09), "beverages": (0.8, 1.15)}


def _scan(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, list[float]]]]:
    h, w = size
    a_high = np.zeros(size, np.float32)
    ratio = np.full(size, 1.1, np.float32)
    a_high[8 : h - 8, 4 : w - 4] += 0.25  # container walls
    a_high[h - 16 : h - 8, 4 : w - 4] += 0.8  # floor and cross-members
    goods = []
    x = int(rng.integers(10, 40))
    for _ in range(int(rng.integers(1, 3))):
        cat = list(GOODS)[int(rng.integers(len(GOODS)))]
        gw, gh = int(rng.integers(50, 130)), int(rng.integers(40, 90))
        if x + gw > w - 10:
            break
        y = h - 16 - gh
        a, r = GOODS[cat]
        a_high[y : y + gh, x : x + gw] += a
        ratio[y : y + gh, x : x + gw] = r
        goods.append((cat, [float(x), float(y), float(gw), float(gh)]))
        x += gw + int(rng.integers(10, 40))
    a_high += rng.normal(0, 0.01, size).astype(np.float32)
    a_low = a_high * ratio
    return _to16(a_high), _to16(a_low), goods


def _to16(attenuation: np.ndarray) -> np.ndarray:
    return np.round(np.exp(-np.clip(attenuation, 0, None)) * 65535).astype(np.uint16)


def write_dataset(
    root: str | Path,
    *,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (128, 384),
    seed: int = 0,
    single_energy: bool = False,
) -> Path:
    """Write a tiny dataset and return its folder."""
    root = Path(root)
    splits = splits or {"train": 6, "val": 2}
    table = default_goods_table()
    categories = [{"id": i + 1, "name": k, "supercategory": "goods"} for i, k in enumerate(table.keys)]
    cat_id = {c["name"]: c["id"] for c in categories}
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = []
    n = 0
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for _ in range(count):
            n += 1
            scan_id = f"s{n:06d}"
            high, low, goods = _scan(rng, size)
            cv2.imwrite(str(root / "images" / split / f"{scan_id}_high.png"), high)
            entry = {
                "id": n, "file_name": f"{split}/{scan_id}_high.png", "width": size[1], "height": size[0],
                "scan_id": scan_id, "pixel_mm": [5.0, 5.0], "energies": ["6MV"] if single_energy else ["6MV", "4MV"],
                "low_file_name": None,
            }
            if not single_energy:
                cv2.imwrite(str(root / "images" / split / f"{scan_id}_low.png"), low)
                entry["low_file_name"] = f"{split}/{scan_id}_low.png"
            images.append(entry)
            for cat, bbox in goods:
                anns.append({"id": len(anns) + 1, "image_id": n, "category_id": cat_id[cat], "bbox": bbox,
                             "area": bbox[2] * bbox[3], "iscrowd": 0})
            cats = sorted({c for c, _ in goods})
            Manifest(container_id=f"TEST{n:07d}", lines=[ManifestLine(hs_code=table.hs_code_for(c)) for c in cats]).save(
                root / "manifests" / f"{scan_id}.json"
            )
            truth.append({"scan_id": scan_id, "split": split, "seed": seed * 1000 + n, "scenario": "clean",
                          "mismatch": False, "declared": cats, "loaded": cats, "undeclared": [], "missing": [],
                          "container": "20ft"})
        coco = {"images": images, "annotations": anns, "categories": categories}
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    (root / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    (root / "dataset.json").write_text(json.dumps({
        "format": "xray-dataset", "format_version": 1, "generator": {"name": "tests.fixtures_dataset"},
        "params": {"seed": seed, "size": list(size)}, "splits": splits, "categories": table.keys,
        "created": "2025-01-01T00:00:00Z",
    }))
    return root
