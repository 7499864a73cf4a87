"""A stand-in customs archive: simulated scans exported as a site exports them, with declarations and no boxes.

Real archives hold scan files and a declarations table (HS codes per container), never
boxes, and their declarations carry clerical errors. The stand-in writes exactly that,
so that `xray dataset import archive` and `xray evaluate --swap` run on the same path
as a real site's data:

    OUT/scans/<scan_id>.jpg        one picture per scan (the profile's export)
    OUT/declarations.csv           file (or high, low), container_id, hs_codes
    OUT/truth_loaded.csv           what was really loaded, and which declarations are wrong

A wrong declaration (a clerical error) names a category that the container does not
hold, nor any compatible one; `truth_loaded.csv` keeps the true codes, so that the
detection of clerical errors can be measured. A scan is a pure function of (seed, index).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xray.atomic import write_atomic
from xray.errors import ConfigError
from xray.goods import default_goods_table
from xray.simulate.dataset import run_jobs
from xray.simulate.export import encode
from xray.simulate.profile import load_profile
from xray.simulate.scenarios import SIZES, scenario_config, simulate_scan

DEFAULT_PROFILE = "export-8bit-jpeg"
DECLARATIONS_FILE = "declarations.csv"
TRUTH_FILE = "truth_loaded.csv"
_SCAN_STREAM, _CLERK_STREAM = 10, 11  # spawn keys: the scene and the clerk's error never share draws


@dataclass(frozen=True)
class _Job:
    out: str
    index: int
    seed: int
    profile: str
    size: str
    mismatch_rate: float
    wrong_declarations: float


def archive_scan_seed(seed: int, index: int) -> int:
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(_SCAN_STREAM, index))
    return int(ss.generate_state(1, np.uint64)[0])


def wrong_codes(rng: np.random.Generator, loaded: list[str]) -> tuple[str, list[str]]:
    """A clerk's error: one HS code of a category that explains none of the loaded goods."""
    table = default_goods_table()
    codes = scenario_config()["hs_codes"]
    choices = [k for k in table.keys if k in codes and not any(table.compatible(k, c) for c in loaded)]
    category = choices[int(rng.integers(len(choices)))]
    return category, [codes[category][int(rng.integers(len(codes[category])))][0]]


def _write_one(job: _Job) -> dict[str, Any]:
    sid = f"A{job.index:06d}"
    sim = simulate_scan(job.seed, scan_id=sid, size=job.size, mismatch_rate=job.mismatch_rate, profile=job.profile)
    scans = Path(job.out) / "scans"
    if sim.images.ndim == 3 and sim.images.shape[2] == 3:  # pseudo-colour: one BGR picture
        pictures = [sim.images]
    else:
        pictures = list(sim.images)
    names = []
    for picture, energy in zip(pictures, ("high", "low")):
        data, suffix = encode(picture, sim.jpeg_quality)
        name = f"{sid}{suffix}" if len(pictures) == 1 else f"{sid}_{energy}{suffix}"
        write_atomic(scans / name, data)
        names.append(name)
    true_codes = [line.hs_code for line in sim.manifest.lines]
    clerk = np.random.default_rng([job.seed, _CLERK_STREAM])
    wrong = bool(clerk.random() < job.wrong_declarations)
    declared = wrong_codes(clerk, sim.truth["loaded"])[1] if wrong else true_codes
    return {
        "scan_id": sid,
        "files": names,
        "container_id": sim.manifest.container_id,
        "hs_codes": declared,
        "true_hs_codes": true_codes,
        "wrong_declaration": wrong,
        "loaded": sim.truth["loaded"],
        "scenario": sim.truth["scenario"],
        "seed": job.seed,
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def generate_archive(
    out: str | Path,
    *,
    count: int,
    seed: int = 0,
    profile: str = DEFAULT_PROFILE,
    wrong_declarations: float = 0.1,
    mismatch_rate: float = 0.0,
    size: str = "mixed",
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate `count` scans into a stand-in archive folder and return its summary.

    Args:
        profile: The scanner profile that renders and exports every scan (default: single-energy
            8-bit JPEG cropped to the container, what archives mostly hold).
        wrong_declarations: Share of scans whose declarations table names another category than
            the goods loaded (clerical errors; the true codes stay in `truth_loaded.csv`).
        mismatch_rate: Share of scans with a real misdeclaration from the simulator's scenarios
            (concealment, substitution, ...); 0 by default: an archive of cleared scans.

    Raises:
        ConfigError: bad parameters, an unknown profile, or `out` exists and is not empty.
    """
    out = Path(out)
    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    for name, v in (("wrong declarations", wrong_declarations), ("mismatch rate", mismatch_rate)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    if size not in SIZES:
        raise ConfigError(f"size must be one of {SIZES}, got {size!r}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    profile = load_profile(profile).name  # an unknown name fails here, not in a worker
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new folder")
    (out / "scans").mkdir(parents=True, exist_ok=True)
    jobs = [
        _Job(str(out), i, archive_scan_seed(seed, i), profile, size, mismatch_rate, wrong_declarations)
        for i in range(count)
    ]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = run_jobs(_write_one, jobs, workers=workers, desc="simulate archive", progress=progress)
    elapsed = time.perf_counter() - t0

    dual = any(len(r["files"]) == 2 for r in rows)
    file_cols = ["high", "low"] if dual else ["file"]
    decl = [
        {**dict(zip(file_cols, r["files"])), "container_id": r["container_id"], "hs_codes": ";".join(r["hs_codes"])}
        for r in rows
    ]
    write_atomic(out / DECLARATIONS_FILE, _table(decl, [*file_cols, "container_id", "hs_codes"]))
    truth = [
        {
            "scan_id": r["scan_id"],
            "file": r["files"][0],
            "container_id": r["container_id"],
            "hs_codes": ";".join(r["hs_codes"]),
            "true_hs_codes": ";".join(r["true_hs_codes"]),
            "loaded": ";".join(r["loaded"]),
            "wrong_declaration": int(r["wrong_declaration"]),
            "scenario": r["scenario"],
            "seed": r["seed"],
        }
        for r in rows
    ]
    write_atomic(out / TRUTH_FILE, _table(truth, list(truth[0])))
    summary = {
        "archive": str(out),
        "scans": count,
        "profile": profile,
        "seed": seed,
        "size": size,
        "wrong_declarations": sum(r["wrong_declaration"] for r in rows),
        "wrong_declaration_rate": wrong_declarations,
        "mismatch_rate": mismatch_rate,
        "scenarios": dict(
            sorted({s: sum(r["scenario"] == s for r in rows) for s in {r["scenario"] for r in rows}}.items())
        ),
        "seconds": round(elapsed, 2),
        "seconds_per_scan": round(elapsed / count, 4),
        "workers": workers,
    }
    write_atomic(out / "archive.json", json.dumps({k: v for k, v in summary.items() if k != "seconds"}, indent=2))
    return summary
