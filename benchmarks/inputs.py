"""The canonical benchmark inputs: one full-resolution 20-ft and one 40-ft dual-energy scan.

Simulated from fixed seeds, written once into `benchmarks/cache/scans/` as 16-bit PNG
pairs (deflate, OpenCV's default level: what a scanner export or an upload carries)
plus the manifest and the ground truth, and reused by every later run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xray.atomic import write_atomic
from xray.manifest import Manifest
from xray.sources.files import read_scan, write_png16

# name -> (simulator seed, container size, scenario): a concealment case, so that the
# verifier has real work to do (cigarettes or rifles hidden behind declared goods).
CANONICAL = {"40ft": (20261101, "40ft", "concealment"), "20ft": (20261102, "20ft", "concealment")}


@dataclass(frozen=True)
class CanonicalScan:
    """One canonical scan on disk."""

    name: str
    high: Path
    low: Path
    manifest_path: Path
    truth_path: Path
    height: int
    width: int

    @property
    def manifest(self) -> Manifest:
        return Manifest.load(self.manifest_path)

    @property
    def truth(self) -> dict:
        return json.loads(self.truth_path.read_text())

    @property
    def upload_bytes(self) -> int:
        return self.high.stat().st_size + self.low.stat().st_size

    def stored_pair(self) -> tuple[Path, Path]:
        """The same two images as uncompressed ("stored") PNGs, as the simulator's datasets keep them."""
        folder = self.high.parent / "stored"
        folder.mkdir(exist_ok=True)
        pair = (folder / self.high.name, folder / self.low.name)
        if not all(p.is_file() for p in pair):
            scan = read_scan(self.high, self.low)
            for channel, dst in zip(scan.channels, pair, strict=True):
                write_atomic(dst, lambda tmp, c=channel: write_png16(tmp, c, level=0))
        return pair

    def describe(self) -> dict:
        return {"name": self.name, "height": self.height, "width": self.width, "energies": 2, "bit_depth": 16,
                "png_bytes": self.upload_bytes, "scenario": self.truth["scenario"], "seed": self.truth["seed"]}


def canonical_scans(cache: str | Path) -> dict[str, CanonicalScan]:
    """The canonical scans, simulated into `cache/scans` on first use."""
    folder = Path(cache) / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    scans = {}
    for name, (seed, size, scenario) in CANONICAL.items():
        high, low = folder / f"{name}_high.png", folder / f"{name}_low.png"
        manifest, truth = folder / f"{name}.manifest.json", folder / f"{name}.truth.json"
        if not all(p.is_file() for p in (high, low, manifest, truth)):
            _write(name, seed, size, scenario, high, low, manifest, truth)
        t = json.loads(truth.read_text())
        scans[name] = CanonicalScan(name, high, low, manifest, truth, t["height"], t["width"])
    return scans


def _write(name: str, seed: int, size: str, scenario: str, high: Path, low: Path, manifest: Path,
           truth: Path) -> None:
    from xray.simulate.scenarios import simulate_scan

    sim = simulate_scan(seed, scan_id=f"bench-{name}", size=size, scenario=scenario)
    for path, image in zip((high, low), sim.images, strict=True):
        transmission = image / np.float64(65535.0)  # exact: write_png16 rounds back to the same uint16
        write_atomic(path, lambda tmp, t=transmission: write_png16(tmp, t))
    sim.manifest.save(manifest)
    h, w = sim.images.shape[1:]
    truth.write_text(json.dumps({"seed": seed, "height": int(h), "width": int(w), "pixel_mm": sim.pixel_mm,
                                 "boxes": [[c, [int(v) for v in b]] for c, b in sim.boxes], **sim.truth}, indent=2))
