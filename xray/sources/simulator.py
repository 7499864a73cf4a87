"""The virtual scanner as an image source: simulated scans, each with its manifest and truth."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xray.scan import Scan, ScanKind
from xray.simulate.dataset import scan_seed
from xray.simulate.scenarios import simulate_scan
from xray.sources.base import ImageSource


class SimulatorSource(ImageSource):
    """Yields `count` simulated dual-energy scans (forever if count is None).

    The manifest and the ground truth ride along in `scan.meta["manifest"]` and
    `scan.meta["truth"]`, so a pipeline can be driven end to end without files.
    """

    def __init__(self, *, count: int | None = 10, seed: int = 0, size: str = "mixed", mismatch_rate: float = 0.3):
        self.count, self.seed, self.size, self.mismatch_rate = count, seed, size, mismatch_rate

    def __iter__(self) -> Iterator[Scan]:
        i = 0
        while self.count is None or i < self.count:
            seed = scan_seed(self.seed, "test", i)
            sim = simulate_scan(seed, scan_id=f"virtual{i:06d}", size=self.size, mismatch_rate=self.mismatch_rate)
            yield Scan(
                id=sim.scan_id,
                channels=sim.images.astype(np.float32) / np.float32(65535.0),
                kind=ScanKind.DUAL,
                pixel_mm=(sim.pixel_mm, sim.pixel_mm),
                bit_depth=16,
                energies=sim.energies,
                meta={"scanner": "xray virtual scanner", "container_id": sim.manifest.container_id,
                      "manifest": sim.manifest, "truth": sim.truth, "seed": seed,
                      "boxes": sim.boxes},
            )
            i += 1
