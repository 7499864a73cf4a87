"""`xray dataset import archive|coco|yolo`: the command line of the dataset importers.

`add_import_arguments` fills the `import` parser; `run_import` runs it, prints the summary
(scans per category and split, each skipped file with why) and returns the exit status.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xray.errors import ConfigError

from .archive import import_archive
from .labelled import import_coco, import_yolo
from .layout import ImportReport
from .splits import DEFAULT_FRACTIONS


def _coco_files(values: list[str]) -> str | dict[str, str]:
    """`FILE` (split here) or `train=FILE val=FILE ...` (the user's splits)."""
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    files = {}
    for v in values:
        split, sep, path = v.partition("=")
        if not sep or not split or not path:
            raise ConfigError(f"--coco takes one FILE or SPLIT=FILE pairs, got {v!r}")
        files[split] = path
    if "train" not in files:
        raise ConfigError(f"--coco SPLIT=FILE pairs need a train split, got {', '.join(files)}")
    return files


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `xray dataset import`: a source kind and its inputs."""
    kinds = parser.add_subparsers(dest="import_kind", required=True, metavar="{archive,coco,yolo}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, type=Path, help="dataset folder to write (new or empty)")
        p.add_argument("--splits", nargs=3, type=float, default=list(DEFAULT_FRACTIONS), metavar=("TRAIN", "VAL", "TEST"),
                       help="shares of the splits (default 0.8 0.1 0.1)")
        p.add_argument("--seed", type=int, default=0, help="seed of the split (same seed, same split)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = kinds.add_parser("archive", help="scans plus a declarations table (HS codes per container), no boxes")
    p.add_argument("--scans", required=True, type=Path, help="folder of the scan files the table names")
    p.add_argument("--table", required=True, type=Path,
                   help="declarations, .csv or .jsonl: file (or high, low), container_id, hs_codes; "
                        "optional scan_id, outcome, found_hs, pixel_mm")
    common(p)
    p = kinds.add_parser("coco", help="a COCO detection set (boxes, categories from the data)")
    p.add_argument("--images", required=True, type=Path, help="folder the images' file_names are relative to")
    p.add_argument("--coco", required=True, nargs="+", metavar="[SPLIT=]FILE",
                   help="one COCO JSON (split here) or train=FILE val=FILE test=FILE")
    p.add_argument("--pixel-mm", type=float, nargs=2, default=None, metavar=("ROW", "COL"),
                   help="pixel spacing of every image (default: from the data, else 5 mm)")
    common(p)
    p = kinds.add_parser("yolo", help="an Ultralytics YOLO set (data.yaml, images/, labels/)")
    p.add_argument("--data", required=True, type=Path, help="data.yaml, or the folder holding it")
    p.add_argument("--pixel-mm", type=float, nargs=2, default=None, metavar=("ROW", "COL"),
                   help="pixel spacing of every image (default: from the file, else 5 mm)")
    common(p)


def run_import(args: argparse.Namespace) -> int:
    """Run `xray dataset import`; prints the summary. Errors are `XrayError`s for the CLI to report."""
    common = {"splits": tuple(args.splits), "seed": args.seed, "progress": not args.quiet}
    pixel_mm = tuple(args.pixel_mm) if getattr(args, "pixel_mm", None) else None
    report: ImportReport
    if args.import_kind == "archive":
        report = import_archive(args.scans, args.table, args.out, **common)
    elif args.import_kind == "coco":
        report = import_coco(args.images, _coco_files(args.coco), args.out, pixel_mm=pixel_mm, **common)
    else:
        report = import_yolo(args.data, args.out, pixel_mm=pixel_mm, **common)
    print(report.summary())
    print(f"report: {args.out / 'import_report.json'}")
    return 0
