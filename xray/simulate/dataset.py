"""Write simulated scans as an xray dataset (datasets/FORMAT.md): PNGs, COCO, manifests, truth."""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from tqdm import tqdm

import xray
from xray.errors import ConfigError
from xray.goods import default_goods_table
from xray.simulate.export import encode
from xray.simulate.profile import parse_profile_list
from xray.simulate.scenarios import SIZES, SimulatedScan, simulate_scan

SPLITS = ("train", "val", "test")
J = TypeVar("J")
R = TypeVar("R")
SPLIT_INDEX = {s: i for i, s in enumerate(SPLITS)}


def scan_seed(seed: int, split: str, index: int) -> int:
    """The seed of one scan: independent streams per (dataset seed, split, index).

    Splits draw from disjoint spawn keys, so no seed is ever shared between them.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(SPLIT_INDEX[split], index))
    return int(ss.generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class _Job:
    out: str
    split: str
    index: int
    seed: int
    size: str
    mismatch_rate: float
    compress: bool
    profiles: tuple[str, ...] = ()


_PROFILE_CHOICE_STREAM = 4  # spawn key of the draw that picks a scan's profile (never shifts the scene)


def scan_profile(seed: int, profiles: tuple[str, ...]) -> str:
    """The profile one scan is rendered with, drawn from its own seed."""
    return profiles[int(np.random.default_rng([seed, _PROFILE_CHOICE_STREAM]).integers(len(profiles)))]


# Stored (uncompressed, unfiltered) PNG writes and reads ~10x faster than deflated:
# noisy 16-bit scans compress only to ~2/3 anyway, and training reads every image
# many times. `compress=True` trades that speed for smaller files.
_PNG_STORED = [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def write_png(path: Path, picture: np.ndarray, *, compress: bool) -> None:
    """One 16-bit PNG. Encoded, then written as bytes: a full disk or a missing folder raises
    the operating system's own error (ENOSPC, ENOENT), where cv2.imwrite only returns False."""
    ok, encoded = cv2.imencode(".png", picture, [] if compress else _PNG_STORED)
    if not ok:
        raise OSError(f"PNG encoder failed for pixels of shape {picture.shape} ({picture.dtype}) meant for {path}")
    path.write_bytes(encoded.tobytes())


def write_export(sim: SimulatedScan, folder: Path, *, compress: bool = True) -> list[Path]:
    """Write a profiled scan's export into `folder` as a scanner would hand it over: 16-bit PNGs
    (`<id>_high.png`, `<id>_low.png`), or 8-bit JPEG or PNG; single energy and pseudo-colour only `_high`."""
    pictures = [sim.images] if sim.images.ndim == 3 and sim.images.shape[2] == 3 else list(sim.images)
    paths = []
    for picture, energy in zip(pictures, ("high", "low")):
        if sim.images.dtype == np.uint16:
            path = folder / f"{sim.scan_id}_{energy}.png"
            write_png(path, picture, compress=compress)
        else:
            data, suffix = encode(picture, sim.jpeg_quality)
            path = folder / f"{sim.scan_id}_{energy}{suffix}"
            path.write_bytes(data)
        paths.append(path)
    return paths


def _write_profiled(job: _Job, sim: SimulatedScan) -> tuple[str, str | None]:
    """A profiled scan's export under images/<split>/; the names its annotation records."""
    names = [
        f"{job.split}/{p.name}" for p in write_export(sim, Path(job.out) / "images" / job.split, compress=job.compress)
    ]
    return names[0], names[1] if len(names) > 1 else None


def run_jobs(fn: Callable[[J], R], jobs: list[J], *, workers: int, desc: str, progress: bool) -> list[R]:
    """`fn` over `jobs` in order, on `workers` forked processes (1: in this one), with a progress bar."""
    results: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit="scan", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
        else:
            with mp.get_context("fork").Pool(workers) as pool:
                for r in pool.imap(fn, jobs, chunksize=2):
                    results.append(r)
                    bar.update()
    return results


def _write_one(job: _Job) -> dict:
    sid = f"{job.split}{job.index:06d}"
    if job.profiles:
        sim = simulate_scan(
            job.seed,
            scan_id=sid,
            size=job.size,
            mismatch_rate=job.mismatch_rate,
            profile=scan_profile(job.seed, job.profiles),
        )
        high, low = _write_profiled(job, sim)
        sim.manifest.save(Path(job.out) / "manifests" / f"{sid}.json")
        h, w = sim.images.shape[:2] if sim.images.ndim == 3 and sim.images.shape[2] == 3 else sim.images.shape[1:]
        return {
            "image": {
                "file_name": high,
                "low_file_name": low,
                "scan_id": sid,
                "width": int(w),
                "height": int(h),
                "pixel_mm": [round(v, 4) for v in sim.pixel_spacing],
                "energies": list(sim.energies),
                "profile": sim.profile,
            },
            "boxes": [(c, [int(v) for v in b]) for c, b in sim.boxes],
            "truth": {"scan_id": sid, "split": job.split, "seed": job.seed, **sim.truth},
        }
    sim = simulate_scan(job.seed, scan_id=sid, size=job.size, mismatch_rate=job.mismatch_rate)
    names = (f"{job.split}/{sid}_high.png", f"{job.split}/{sid}_low.png")
    for name, img in zip(names, sim.images):
        write_png(Path(job.out) / "images" / name, img, compress=job.compress)
    sim.manifest.save(Path(job.out) / "manifests" / f"{sid}.json")
    h, w = sim.images.shape[1:]
    return {
        "image": {
            "file_name": names[0],
            "low_file_name": names[1],
            "scan_id": sid,
            "width": int(w),
            "height": int(h),
            "pixel_mm": [sim.pixel_mm, sim.pixel_mm],
            "energies": list(sim.energies),
        },
        "boxes": [(c, [int(v) for v in b]) for c, b in sim.boxes],
        "truth": {"scan_id": sid, "split": job.split, "seed": job.seed, **sim.truth},
    }


def _split_counts(count: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_val, n_test = int(round(count * fractions[1])), int(round(count * fractions[2]))
    return {"train": count - n_val - n_test, "val": n_val, "test": n_test}


def generate_dataset(
    out: str | Path,
    *,
    count: int,
    seed: int = 0,
    size: str = "mixed",
    workers: int = 1,
    mismatch_rate: float = 0.3,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    compress: bool = False,
    progress: bool = True,
    profiles: str | list[str] | None = None,
) -> dict:
    """Simulate `count` scans into a dataset folder and return its summary.

    `profiles` ("a,b" or a list of scanner profile names) renders each scan with one of
    them, drawn from the scan's seed; None keeps the default scanner (16-bit dual energy).

    Raises:
        ConfigError: bad parameters, or `out` exists and is not empty.
    """
    out = Path(out)
    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    if size not in SIZES:
        raise ConfigError(f"size must be one of {SIZES}, got {size!r}")
    if not 0 <= mismatch_rate <= 1:
        raise ConfigError(f"mismatch rate must be in [0, 1], got {mismatch_rate}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    chosen = tuple(p.name for p in parse_profile_list(profiles))
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new folder")
    counts = _split_counts(count, splits)
    for d in ["annotations", "manifests"] + [f"images/{s}" for s in SPLITS]:
        (out / d).mkdir(parents=True, exist_ok=True)
    jobs = [
        _Job(str(out), s, i, scan_seed(seed, s, i), size, mismatch_rate, compress, chosen)
        for s in SPLITS
        for i in range(counts[s])
    ]
    t0 = time.perf_counter()
    results = run_jobs(_write_one, jobs, workers=workers, desc="simulate", progress=progress)
    elapsed = time.perf_counter() - t0

    table = default_goods_table()
    cat_id = {k: i + 1 for i, k in enumerate(table.keys)}
    categories = [{"id": cat_id[k], "name": k, "supercategory": "goods"} for k in table.keys]
    kinds: dict[str, int] = {}
    with open(out / "truth.jsonl", "w") as truth:
        for r in results:
            truth.write(json.dumps(r["truth"]) + "\n")
            kinds[r["truth"]["scenario"]] = kinds.get(r["truth"]["scenario"], 0) + 1
    n_boxes = 0
    for split in SPLITS:
        images: list[dict] = []
        anns: list[dict] = []
        for r in (r for r in results if r["truth"]["split"] == split):
            image_id = len(images) + 1
            images.append({"id": image_id, **r["image"]})
            for cat, (x1, y1, x2, y2) in r["boxes"]:
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
        n_boxes += len(anns)
        coco = {
            "info": {"description": "xray simulated cargo scans", "version": xray.__version__},
            "images": images,
            "annotations": anns,
            "categories": categories,
        }
        (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    summary = {
        "format": "xray-dataset",
        "format_version": 1,
        "generator": {"name": "xray.simulate", "version": xray.__version__, "python": platform.python_version()},
        "params": {
            "count": count,
            "seed": seed,
            "size": size,
            "mismatch_rate": mismatch_rate,
            "split_fractions": list(splits),
            "workers": workers,
            "png_compressed": compress,
            **({"profiles": list(chosen)} if chosen else {}),
        },
        "splits": counts,
        "categories": table.keys,
        "scenarios": dict(sorted(kinds.items())),
        "boxes": n_boxes,
        "mismatches": sum(r["truth"]["mismatch"] for r in results),
        **({"profiles": {p: sum(r["truth"]["profile"] == p for r in results) for p in chosen}} if chosen else {}),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "seconds": round(elapsed, 2), "scans_per_second": round(len(jobs) / elapsed, 2)}
