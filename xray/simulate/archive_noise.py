"""Turn a simulated dataset into a stand-in customs archive: wrong declarations, no boxes.

Archives hold scans and declarations, and some declarations are wrong (clerical errors and
the misdeclarations customs hunts for). This rewrites, in place, a chosen fraction of the
manifests of some splits: one declared line gets the HS code of another goods category.
The flipped scans are listed in `label_noise.json` (the truth stays in `truth.jsonl`).
With `drop_boxes` every split's boxes are removed, as in a real archive.

    python -m xray.simulate.archive_noise DATASET --fraction 0.1 [--splits train,val] [--drop-boxes]

TODO(lead): F1's stand-in archive generator supersedes this once merged; `make archive-model`
calls this module until then.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xray.atomic import write_atomic
from xray.errors import DatasetError
from xray.goods import default_goods_table


def _flip_one(manifest: dict[str, Any], rng: np.random.Generator) -> tuple[str, str] | None:
    """Give one declared line the HS code of a category the manifest does not declare."""
    table = default_goods_table()
    lines = manifest.get("lines") or []
    if not lines:
        return None  # declared empty: nothing to mis-code
    declared = {table.category_of(str(line.get("hs_code", ""))) for line in lines}
    others = [k for k in table.keys if k not in declared]
    i = int(rng.integers(len(lines)))
    old = table.category_of(str(lines[i].get("hs_code", ""))) or "unknown"
    new = others[int(rng.integers(len(others)))]
    lines[i] = {**lines[i], "hs_code": table.hs_code_for(new), "description": f"{table[new].name} (declared)"}
    return old, new


def flip_declarations(
    root: str | Path,
    *,
    fraction: float,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    drop_boxes: bool = False,
) -> dict[str, Any]:
    """Flip the declared category of `fraction` of the manifests of `splits`, in place.

    Returns:
        The record written to `label_noise.json`: fraction, seed, splits and the flipped scans.

    Raises:
        DatasetError: the folder is not a dataset in the xray format.
    """
    root = Path(root)
    if not 0 <= fraction <= 1:
        raise DatasetError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    flipped: dict[str, list[str]] = {}
    for split in splits:
        ann_path = root / "annotations" / f"{split}.json"
        if not ann_path.is_file():
            raise DatasetError(f"{root}: no split {split!r} ({ann_path} missing)")
        coco = json.loads(ann_path.read_text())
        for entry in coco["images"]:
            path = root / "manifests" / f"{entry['scan_id']}.json"
            if not path.is_file() or rng.random() >= fraction:
                continue
            manifest = json.loads(path.read_text())
            change = _flip_one(manifest, rng)
            if change is not None:
                write_atomic(path, json.dumps(manifest, indent=2))
                flipped[entry["scan_id"]] = list(change)
    truth_path = root / "truth.jsonl"
    if flipped and truth_path.is_file():
        # A flipped declaration is a mismatch: calibration and evaluation read it from the truth.
        rows = [json.loads(line) for line in truth_path.read_text().splitlines() if line.strip()]
        table = default_goods_table()
        for row in rows:
            if row.get("scan_id") in flipped:
                manifest = json.loads((root / "manifests" / f"{row['scan_id']}.json").read_text())
                row["declared"] = sorted(
                    {c for line in manifest.get("lines", []) if (c := table.category_of(str(line.get("hs_code", ""))))}
                )
                row["mismatch"], row["scenario"] = True, "wrong_declaration"
        write_atomic(truth_path, "".join(json.dumps(r) + "\n" for r in rows))
    if drop_boxes:
        for ann_path in sorted((root / "annotations").glob("*.json")):
            coco = json.loads(ann_path.read_text())
            coco["annotations"] = []
            write_atomic(ann_path, json.dumps(coco))
    record = {"fraction": fraction, "seed": seed, "splits": list(splits), "drop_boxes": drop_boxes, "flipped": flipped}
    write_atomic(root / "label_noise.json", json.dumps(record, indent=2))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xray.simulate.archive_noise", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="dataset folder (xray simulate output), rewritten in place")
    p.add_argument("--fraction", type=float, default=0.1, help="share of manifests to give a wrong category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="train,val", help="splits whose declarations are flipped")
    p.add_argument("--drop-boxes", action="store_true", help="remove every box (an archive has none)")
    args = p.parse_args(argv)
    try:
        rec = flip_declarations(
            args.root, fraction=args.fraction, seed=args.seed, splits=args.splits.split(","), drop_boxes=args.drop_boxes
        )
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{args.root}: {len(rec['flipped'])} declarations flipped in {args.splits}"
        + ("; boxes dropped" if args.drop_boxes else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
