"""Parcels and bags on a conveyor through a dual-energy baggage scanner, exported in pseudo-colour.

A baggage or postal scanner works at ~80 and ~160 kVp, where the photoelectric effect makes
the low/high attenuation ratio climb steeply with atomic number: that ratio is what the
viewer turns into colour (orange organic, green mixed / light metals, blue metal) while the
high-energy transmission sets the brightness. The scene is areal-density maps of three basis
materials (organic, aluminium, iron; `xray.simulate.parcel_goods`), transmission is
Beer-Lambert over each beam's spectrum (`xray.simulate.physics.Spectrum`), plus photon noise.

Each picture holds one parcel (a carton) or bag on the belt with 2-5 everyday items and,
in some, contraband (knives, guns, cigarettes, drug packages) or undeclared electronics.
The declaration lists the everyday goods it carries (HS codes from `xray/goods_parcel.yaml`).
Boxes are exact (the pixels each item's outline covers); every picture is a function of its seed.
Written in the xray dataset layout by `generate_parcel_dataset` (`xray simulate --scene parcel`).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

import xray
from xray.errors import ConfigError
from xray.goods import goods_table
from xray.manifest import Manifest, ManifestLine
from xray.simulate.dataset import SPLITS, _split_counts, scan_seed
from xray.simulate.export import encode, resample
from xray.simulate.parcel_goods import CONTRABAND, EVERYDAY, MATERIALS, Box, draw_item
from xray.simulate.physics import Spectrum

GOODS_TABLE = "parcel"
SIZE = 416  # picture side in pixels, as the baggage sets
PIXEL_MM = 3.0
ENERGIES = ("80kV", "160kV")

# Mass attenuation coefficients (cm^2/g, NIST XCOM) of the basis materials at baggage-scanner
# energies; between grid points log-log interpolated.
KEV = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0])
MU_KV = {
    "organic": np.array([0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505, 0.1370]),
    "aluminium": np.array([3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378, 0.1223]),
    "iron": np.array([25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964, 0.1460]),
}


def _mu(material: str, kev: np.ndarray) -> np.ndarray:
    return np.exp(np.interp(np.log(kev), np.log(KEV), np.log(MU_KV[material])))


@lru_cache(maxsize=4)
def tube_spectrum(kvp: float, filter_al_gcm2: float) -> Spectrum:
    """An X-ray tube's detected spectrum: Kramers' law, hardened by an aluminium filter, times E."""
    e = np.linspace(20.0, kvp, 24)
    e = 0.5 * (e[1:] + e[:-1])
    w = (kvp - e) / e * np.exp(-_mu("aluminium", e) * filter_al_gcm2) * e
    return Spectrum(f"{kvp:g}kV", e / 1000.0, w / w.sum())


def spectra() -> tuple[Spectrum, Spectrum]:
    """(low, high) beams of a dual-energy baggage scanner (80 kVp with 1 mm Al, 160 kVp with 3 mm Al + Cu-like)."""
    return tube_spectrum(80.0, 0.27), tube_spectrum(160.0, 2.0)


def transmission(maps: dict[str, np.ndarray], spectrum: Spectrum) -> np.ndarray:
    """Polyenergetic Beer-Lambert transmission of the areal-density maps (float32, (H, W))."""
    kev = spectrum.energies_mev * 1000.0
    t = np.zeros(next(iter(maps.values())).shape, np.float64)
    for k, w in enumerate(spectrum.weights):
        line = sum(maps[m] * _mu(m, kev[k : k + 1])[0] for m in MATERIALS)
        t += w * np.exp(-line)
    return t.astype(np.float32)


@lru_cache(maxsize=1)
def _ratio_anchors() -> tuple[float, float, float]:
    """A_low / A_high of 3 g/cm^2 organic, aluminium and iron: where the colours sit."""
    low, high = spectra()
    out = []
    for m in MATERIALS:
        maps = {k: np.full((1, 1), 3.0 if k == m else 0.0, np.float32) for k in MATERIALS}
        out.append(float(np.log(transmission(maps, low))[0, 0] / np.log(transmission(maps, high))[0, 0]))
    return out[0], out[1], out[2]


def pseudo_colour(t_low: np.ndarray, t_high: np.ndarray) -> np.ndarray:
    """The viewer's picture (BGR uint8): hue from A_low / A_high (orange organic, green
    aluminium-like, blue iron), brightness from the high-energy transmission, air white."""
    a_low = -np.log(np.clip(t_low, 1e-4, 1.0))
    a_high = -np.log(np.clip(t_high, 1e-4, 1.0))
    ratio = (a_low + 0.02) / (a_high + 0.02)  # + eps: thin matter has no reliable ratio
    r_org, r_al, r_fe = _ratio_anchors()
    hue = np.interp(ratio, [r_org, r_al, r_fe], [14.0, 60.0, 115.0])  # OpenCV hue, 0-180
    sat = 1.0 - np.exp(-a_high / 0.25)
    val = np.clip(t_high, 0.0, 1.0) ** 0.6
    hsv = np.stack([hue, sat * 255.0, val * 255.0], axis=-1)
    return cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2BGR)


@dataclass
class ParcelScan:
    """One simulated parcel picture, its boxes, declaration and truth."""

    scan_id: str
    seed: int
    image: np.ndarray  # (H, W, 3) BGR uint8
    boxes: list[tuple[str, Box]]
    manifest: Manifest
    truth: dict[str, Any] = field(default_factory=dict)


def _container(maps: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[str, tuple[int, int, int, int]]:
    """A carton or a bag on the belt; returns its kind and interior (x0, y0, x1, y1)."""
    w, h = int(rng.integers(250, 380)), int(rng.integers(220, 380))
    x0, y0 = int(rng.integers(8, SIZE - w - 8 + 1)), int(rng.integers(8, SIZE - h - 8 + 1))
    kind = "carton" if rng.random() < 0.5 else "bag"
    outer = np.zeros((SIZE, SIZE), np.float32)
    cv2.rectangle(outer, (x0, y0), (x0 + w, y0 + h), 1.0, -1)
    if kind == "carton":
        maps["organic"] += outer * np.float32(rng.uniform(0.3, 0.6))  # cardboard top and bottom
        edge = np.zeros_like(outer)
        cv2.rectangle(edge, (x0, y0), (x0 + w, y0 + h), 1.0, 4)
        maps["organic"] += edge * np.float32(rng.uniform(1.0, 2.0))  # walls seen edge-on
    else:
        maps["organic"] += outer * np.float32(rng.uniform(0.4, 0.8))  # fabric
        frame = np.zeros_like(outer)
        cv2.rectangle(frame, (x0 + 6, y0 + 6), (x0 + w - 6, y0 + h - 6), 1.0, 3)
        maps["aluminium"] += frame * np.float32(rng.uniform(0.5, 1.0))  # trolley frame
        cv2.line(maps["iron"], (x0 + 10, y0 + h // 2), (x0 + w - 10, y0 + h // 2), float(rng.uniform(0.2, 0.4)), 2)
    return kind, (x0 + 12, y0 + 12, x0 + w - 12, y0 + h - 12)


def _place(rng: np.random.Generator, interior: tuple[int, int, int, int], taken: list[Box]) -> tuple[float, float]:
    """An item centre inside the container, away from the items already placed (a few tries)."""
    x0, y0, x1, y1 = interior
    best, best_d = (0.0, 0.0), -1.0
    for _ in range(12):
        c = (float(rng.uniform(x0 + 25, x1 - 25)), float(rng.uniform(y0 + 25, y1 - 25)))
        d = min((abs(c[0] - (b[0] + b[2]) / 2) + abs(c[1] - (b[1] + b[3]) / 2) for b in taken), default=1e9)
        if d > 60:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def simulate_parcel(
    seed: int,
    *,
    scan_id: str | None = None,
    contraband_rate: float = 0.4,
    undeclared_rate: float = 0.15,
    photons: float = 2.0e4,
) -> ParcelScan:
    """One parcel picture from its seed (see the module docstring).

    Args:
        contraband_rate: Share of parcels with one contraband item (never declared).
        undeclared_rate: Share of parcels with electronics that are not declared.
        photons: Photons per pixel in air (fewer: noisier pictures).
    """
    rng = np.random.default_rng(seed)
    table = goods_table(GOODS_TABLE)
    maps = {m: np.zeros((SIZE, SIZE), np.float32) for m in MATERIALS}
    maps["organic"] += np.float32(0.25)  # the conveyor belt, under everything
    kind, interior = _container(maps, rng)
    declared = [str(c) for c in rng.choice(EVERYDAY, size=int(rng.integers(2, 5)), replace=True)]
    items = list(declared)
    hidden: list[str] = []
    if rng.random() < contraband_rate:
        hidden.append(str(rng.choice(CONTRABAND)))
    if rng.random() < undeclared_rate and "electronics" not in declared:
        hidden.append("electronics")
    items += hidden
    boxes: list[tuple[str, Box]] = []
    for cat in items:
        centre = _place(rng, interior, [b for _, b in boxes])
        box = draw_item(cat, maps, centre, float(rng.uniform(0, np.pi)), rng)
        if box is not None:
            boxes.append((cat, box))
    low, high = spectra()
    pictures = []
    for spectrum in (low, high):
        t = transmission(maps, spectrum)
        noisy = rng.poisson(t * photons) / photons  # photon noise
        pictures.append(cv2.GaussianBlur(noisy.astype(np.float32), (0, 0), 0.6))  # detector blur
    image = pseudo_colour(pictures[0], pictures[1])
    sid = scan_id or f"parcel{seed:020d}"
    lines = [
        ManifestLine(
            hs_code=table.hs_code_for(c), description=table[c].name, quantity=float(declared.count(c)), unit="pcs"
        )
        for c in dict.fromkeys(declared)
    ]
    undeclared = sorted(set(hidden) - set(declared))
    scenario = "clean" if not undeclared else ("concealment" if set(undeclared) & set(CONTRABAND) else "undeclared")
    truth = {
        "scenario": scenario,
        "mismatch": bool(undeclared),
        "declared": sorted(set(declared)),
        "loaded": sorted(set(items)),
        "undeclared": undeclared,
        "missing": [],
        "container": kind,
    }
    return ParcelScan(
        scan_id=sid, seed=seed, image=image, boxes=boxes, manifest=Manifest(container_id=sid, lines=lines), truth=truth
    )


def rescaled(sim: ParcelScan, scale: float) -> ParcelScan:
    """The picture exported at `scale` (area-averaged when shrinking); each box keeps every pixel its item reaches."""
    image = sim.image.transpose(2, 0, 1).astype(np.float32)
    out, boxes = resample(image, sim.boxes, scale, scale)
    picture = np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return replace(sim, image=np.ascontiguousarray(picture), boxes=boxes)


def generate_parcel_dataset(
    out: str | Path,
    *,
    count: int,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    contraband_rate: float = 0.4,
    jpeg_quality: int | None = None,
    scale: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate `count` parcel pictures into a dataset folder (datasets/FORMAT.md); returns its summary.

    Pictures are 8-bit pseudo-colour PNGs (or JPEGs at `jpeg_quality`), one file per scan,
    exported at `scale` times the scanner's 416 x 416 (boxes scaled with them, kept exact).
    `dataset.json` names the goods table (`goods_table: parcel`) its categories come from.

    Raises:
        ConfigError: bad parameters, or `out` exists and is not empty.
    """
    out = Path(out)
    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    if not 0.1 <= scale <= 4.0:
        raise ConfigError(f"scale must be in [0.1, 4], got {scale}")
    if not 0 <= contraband_rate <= 1:
        raise ConfigError(f"contraband rate must be in [0, 1], got {contraband_rate}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new folder")
    counts = _split_counts(count, splits)
    for d in ["annotations", "manifests"] + [f"images/{s}" for s in SPLITS]:
        (out / d).mkdir(parents=True, exist_ok=True)
    table = goods_table(GOODS_TABLE)
    cat_id = {k: i + 1 for i, k in enumerate(table.keys)}
    bar = tqdm(total=count, desc="simulate parcels", unit="scan", disable=not progress)
    n_boxes, mismatches = 0, 0
    kinds: dict[str, int] = {}
    with open(out / "truth.jsonl", "w") as truth_file:
        for split in SPLITS:
            images: list[dict[str, Any]] = []
            anns: list[dict[str, Any]] = []
            for i in range(counts[split]):
                s = scan_seed(seed, split, i)
                sim = simulate_parcel(s, scan_id=f"{split}{i:06d}", contraband_rate=contraband_rate)
                if scale != 1.0:
                    sim = rescaled(sim, scale)
                h, w = sim.image.shape[:2]
                data, suffix = encode(sim.image, jpeg_quality)
                name = f"{split}/{sim.scan_id}_high{suffix}"
                (out / "images" / name).write_bytes(data)
                sim.manifest.save(out / "manifests" / f"{sim.scan_id}.json")
                image_id = len(images) + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": name,
                        "low_file_name": None,
                        "scan_id": sim.scan_id,
                        "width": w,
                        "height": h,
                        "pixel_mm": [PIXEL_MM / scale] * 2,
                        "energies": list(ENERGIES),
                        "profile": "baggage-pseudo-colour",
                    }
                )
                for cat, (x1, y1, x2, y2) in sim.boxes:
                    anns.append(
                        {
                            "id": len(anns) + 1,
                            "image_id": image_id,
                            "category_id": cat_id[cat],
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": 0,
                        }
                    )
                truth_file.write(json.dumps({"scan_id": sim.scan_id, "split": split, "seed": s, **sim.truth}) + "\n")
                kinds[sim.truth["scenario"]] = kinds.get(sim.truth["scenario"], 0) + 1
                mismatches += sim.truth["mismatch"]
                bar.update()
            n_boxes += len(anns)
            coco = {
                "info": {"description": "xray simulated parcels and bags", "version": xray.__version__},
                "images": images,
                "annotations": anns,
                "categories": [{"id": cat_id[k], "name": k, "supercategory": "goods"} for k in table.keys],
            }
            (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    bar.close()
    summary = {
        "format": "xray-dataset",
        "format_version": 1,
        "generator": {"name": "xray.simulate.parcel", "version": xray.__version__, "python": platform.python_version()},
        "params": {
            "scene": "parcel",
            "count": count,
            "seed": seed,
            "split_fractions": list(splits),
            "contraband_rate": contraband_rate,
            "jpeg_quality": jpeg_quality,
            "scale": scale,
        },
        "splits": counts,
        "categories": table.keys,
        "goods_table": GOODS_TABLE,
        "scenarios": dict(sorted(kinds.items())),
        "boxes": n_boxes,
        "mismatches": mismatches,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary
