"""Train a goods detector on a dataset in the xray format.

    python train.py --data DATASET --model models/xray_s.yaml --epochs 50 --out runs/NAME
    python train.py ... --resume          # continue runs/NAME/last.pt
    python train.py ... --init runs/A/best.pt   # fine-tune: A's weights, fresh schedule

The run folder gets last.pt, best.pt, metrics.csv, config.yaml and plots; export the
result with `xray export runs/NAME/best.pt --out models/NAME`.
"""

from __future__ import annotations

import argparse
import sys

import torch

from xray.errors import XrayError
from xray.train.loop import fit


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a goods detector on X-ray scans.", add_help=True)
    p.add_argument("--data", required=True, help="dataset folder (datasets/FORMAT.md)")
    p.add_argument("--model", default="models/xray_s.yaml", help="model config YAML")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning stage)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return p


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        summary = fit(data=args.data, config=args.model, out=args.out, epochs=args.epochs, device=args.device,
                      resume=args.resume, init=args.init, batch_size=args.batch_size, workers=args.workers, seed=args.seed,
                      progress=not args.no_progress)
    except XrayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    best = summary["best"] or {}
    print(f"done: {summary['out']}  best val mAP50 {best.get('mAP50')}  mAP {best.get('mAP')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
