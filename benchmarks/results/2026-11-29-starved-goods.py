"""Share of the pixels inside goods boxes clipped black (at the simulator's detector floor) in a dataset.

python benchmarks/results/2026-11-29-starved-goods.py runs/bench-cache/holdout-mobile-gantry-300
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from xray.simulate.artifacts import FLOOR

root = Path(sys.argv[1])
coco = json.loads((root / "annotations" / "test.json").read_text())
names = {c["id"]: c["name"] for c in coco["categories"]}
by_img = {}
for a in coco["annotations"]:
    by_img.setdefault(a["image_id"], []).append(a)
floor = int(round(FLOOR * 65535)) + 2
shares, per_cat = [], {}
for img in coco["images"]:
    hi = cv2.imread(str(root / "images" / img["file_name"]), cv2.IMREAD_UNCHANGED)
    for a in by_img.get(img["id"], []):
        x, y, w, h = (int(v) for v in a["bbox"])
        box = hi[y : y + h, x : x + w]
        if box.size:
            s = float((box <= floor).mean())
            shares.append(s)
            per_cat.setdefault(names[a["category_id"]], []).append(s)
print(
    f"{root.name}: goods boxes {len(shares)}, clipped share mean {np.mean(shares):.2f}, boxes over half clipped {np.mean(np.array(shares) > 0.5):.2f}"
)
for c, v in sorted(per_cat.items()):
    print(f"  {c:15s} {len(v):4d} boxes, clipped {np.mean(v):.2f}")
