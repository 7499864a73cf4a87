"""Grey levels inside the container walls of simulated 8-bit exports, against issue 13's real ones.

    xray simulate --out /tmp/exp8 --count 300 --seed 777 --profile export-8bit-jpeg
    python benchmarks/results/2026-11-29-export8-greys.py /tmp/exp8

Inside the walls: rows 12-85 % and columns 5-95 % of the exported (container-cropped) image. Real
exports, from issue 13: loaded median 12/255 (p10-p90 4-80), 80 % of pixels below 70, 36 % at 5 or
below; empty median 223, none below 70.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    root = Path(sys.argv[1])
    empty, loaded = [], []
    for line in (root / "truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        path = next((root / "images" / row["split"]).glob(row["scan_id"] + "*"))
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        h, w = grey.shape
        inside = grey[int(0.12 * h) : int(0.85 * h), int(0.05 * w) : int(0.95 * w)].ravel()[::7]
        (loaded if row["loaded"] else empty).append(inside)
    for name, scans in (("empty", empty), ("loaded", loaded)):
        pooled = np.concatenate(scans)
        print(f"{name}: {len(scans)} scans, median {np.median(pooled):.0f}, p10-p90 {np.percentile(pooled, [10, 90])}, "
              f"below 70 {(pooled < 70).mean():.2f}, at 5 or below {(pooled <= 5).mean():.2f}")
    bright = np.array([(s > 80).mean() for s in loaded])
    print(f"loaded: share of the hold above 80 per scan, p10/p50/p90 {np.percentile(bright, [10, 50, 90]).round(2)}")


if __name__ == "__main__":
    main()
