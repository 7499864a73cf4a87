"""The `xray` command."""

from __future__ import annotations

import argparse
import json
import sys

from xray.errors import XrayError


def _simulate(args: argparse.Namespace) -> int:
    from xray.simulate.dataset import generate_dataset

    fractions = tuple(float(v) for v in args.splits.split(","))
    summary = generate_dataset(args.out, count=args.count, seed=args.seed, size=args.size, workers=args.workers,
                               mismatch_rate=args.mismatch_rate, splits=fractions, compress=args.compress,
                               progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray", description="AI analysis of cargo X-ray scans.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="simulate a labeled dataset of cargo scans (the virtual scanner)")
    s.add_argument("--out", required=True, help="dataset folder to create (must be new or empty)")
    s.add_argument("--count", type=int, required=True, help="number of scans")
    s.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same bytes)")
    s.add_argument("--size", choices=["20ft", "40ft", "mixed"], default="mixed", help="container size")
    s.add_argument("--workers", type=int, default=1, help="worker processes")
    s.add_argument("--mismatch-rate", type=float, default=0.3, help="fraction of scans whose manifest is wrong")
    s.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test fractions")
    s.add_argument("--compress", action="store_true", help="deflate the PNGs (~2/3 the size, ~10x slower to write)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except XrayError as e:
        print(f"xray {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
