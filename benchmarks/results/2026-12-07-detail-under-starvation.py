"""What the model's detail channel sees of photon starvation: in training before and after
`augment.domain_scan_resolution`, and on a held-out mobile-gantry scan at inference.

    PYTHONPATH=. .venv/bin/python benchmarks/results/2026-12-07-detail-under-starvation.py

Writes docs/detail-starvation.jpg. Rows: one 16-bit portal training scan (train000007 of
data/sim-realistic4b) starved with a floor of 0.015 (the gantry's range is 0.005-0.02) on the model
input, as every training run so far did; the same scan starved before the shrink; a held-out gantry
scan (runs/denoise/cache, the held-out benchmark's scans, seed 4242) as the engine preprocesses it.
Columns: the high-energy attenuation channel and the detail channel, both as the model sees them
(normalised), on one grey scale per column.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xray.config import load_config
from xray.data.augment import Augment
from xray.data.dataset import XrayDataset
from xray.engine import Engine
from xray.sources.files import read_scan

OFF = {"hflip": 0.0, "vflip": 0.0, "affine": 0.0, "noise": 0.0, "blur": 0.0, "gain": [1.0, 1.0],
       "channel_gain": 0.0, "gamma": [1.0, 1.0], "tip": 0.0, "domain_randomisation": 1.0, "domain_export": 0.0,
       "domain_single_energy": 0.0, "domain_stripes": 0.0, "domain_noise": 0.0, "domain_blur": 0.0,
       "domain_crop": 0.0, "domain_scatter": 0.0, "domain_starvation": 1.0, "domain_starvation_floor": [0.015, 0.015]}


def main() -> None:
    spec = load_config("models/default-realistic4-sr.yaml").input
    rows, labels = [], []
    for at_scan, label in ((False, "training, starved after the shrink (until now)"),
                           (True, "training, starved before the shrink (domain_scan_resolution)")):
        ds = XrayDataset("data/sim-realistic4b", "train", spec=spec,
                         augment=Augment({**OFF, "domain_scan_resolution": at_scan}))
        i = [ds.entry(k)["scan_id"] for k in range(len(ds))].index("train000007")
        rows.append(ds[i][0].numpy())
        labels.append(label)
    engine = Engine(Path("models/default"))
    root = Path("runs/denoise/cache/holdout-mobile-gantry-300/images/test")
    high = sorted(root.glob("*_high.png"))[3]
    rows.append(engine.model_inputs(read_scan(high, None, pixel_mm=(6.0, 6.0)))[0].x)
    labels.append("held-out mobile gantry at inference (starvation floor 0.005-0.02)")
    tiles = []
    for x, label in zip(rows, labels, strict=True):
        att = np.clip((x[0] + 1.0) / 4.0, 0, 1)  # normalised A: air about -1, dense goods about 3
        det = np.clip((x[3] + 0.4) / 6.0, 0, 1)  # normalised detail: flat about -0.4
        pair = np.concatenate([att, np.ones((x.shape[1], 8)), det], axis=1)
        img = cv2.cvtColor((255 * (1 - pair)).astype(np.uint8), cv2.COLOR_GRAY2BGR)  # dark = dense, as scans are shown
        head = np.full((28, img.shape[1], 3), 255, np.uint8)
        cv2.putText(head, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([head, img]))
    top = np.full((30, tiles[0].shape[1], 3), 255, np.uint8)
    w = spec.size[1]
    cv2.putText(top, "attenuation (high energy)", (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(top, "detail channel (texture energy)", (w + 14, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2,
                cv2.LINE_AA)
    out = np.concatenate([top, *tiles])
    cv2.imwrite("docs/detail-starvation.jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("docs/detail-starvation.jpg", out.shape)


if __name__ == "__main__":
    main()
