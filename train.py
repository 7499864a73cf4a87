"""Train a goods detector on a dataset in the xray format: the same as `xray train`.

    python train.py --data DATASET --model models/xray_s.yaml --epochs 50 --out runs/NAME
    python train.py ... --resume          # continue runs/NAME/last.pt
    python train.py ... --init runs/A/best.pt   # fine-tune: A's weights, fresh schedule
"""

import sys

from xray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
