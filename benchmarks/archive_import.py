"""Importing an archive with bad files in it: COUNT scans of a stand-in archive, a share of them
damaged in the ways real exports break (cut short, overwritten, empty, text under an image
name, listed but missing), imported by `xray dataset import archive` in a subprocess. Records
whether it exited cleanly, how many scans it kept, and whether its summary names every bad file.

    python -m benchmarks.archive_import --src data/archive-src --count 500 --bad 0.05 --work /tmp/import-500
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_info

# How an export breaks, cycled over the damaged files.
DAMAGE = ("cut short", "overwritten with noise", "empty", "text under an image name", "listed but missing")


def damage(path: Path, kind: str, rng: np.random.Generator) -> None:
    data = path.read_bytes()
    if kind == "cut short":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "overwritten with noise":
        path.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text under an image name":
        path.write_text("scan export failed: detector timeout\n")
    else:
        path.unlink()


def build(src: Path, count: int, bad: float, work: Path, seed: int) -> tuple[Path, Path, dict[str, str]]:
    """WORK/scans and WORK/declarations.csv: the first `count` rows of SRC's table, `bad` of their files damaged."""
    if work.exists():
        shutil.rmtree(work)
    (work / "scans").mkdir(parents=True)
    with open(src / "declarations.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)[:count]
    column = "file" if "file" in fields else "high"
    for row in rows:
        shutil.copyfile(src / "scans" / row[column], work / "scans" / row[column])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(rows), size=round(bad * len(rows)), replace=False)
    damaged = {}
    for n, i in enumerate(sorted(chosen)):
        name, kind = rows[i][column], DAMAGE[n % len(DAMAGE)]
        damage(work / "scans" / name, kind, rng)
        damaged[name] = kind
    with open(work / "declarations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return work / "scans", work / "declarations.csv", damaged


def run(src: Path, count: int, bad: float, work: Path, seed: int) -> dict[str, Any]:
    scans, table, damaged = build(src, count, bad, work, seed)
    out = work / "site"
    cmd = [sys.executable, "-m", "xray.cli", "dataset", "import", "archive", "--scans", str(scans),
           "--table", str(table), "--out", str(out), "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    report = json.loads((out / "import_report.json").read_text()) if (out / "import_report.json").is_file() else {}
    skipped = {Path(s["file"]).name: s["reason"] for s in report.get("skipped", [])}
    printed = proc.stdout + proc.stderr
    return {
        "machine": machine_info(),
        "command": "xray " + " ".join(cmd[3:]),
        "scans": count,
        "damaged": len(damaged),
        "exit_code": proc.returncode,
        "traceback": "Traceback" in printed,
        "seconds": round(seconds, 1),
        "imported": report.get("imported"),
        "skipped": len(skipped),
        "damaged_named_in_summary": sum(name in printed for name in damaged),
        "damaged_in_report": sum(name in skipped for name in damaged),
        "reasons": {name: {"damage": kind, "reason": skipped.get(name)} for name, kind in damaged.items()},
        "summary_tail": printed[-3000:],
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Importing {r['scans']} scans with {r['damaged']} damaged",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores. Command: `{r['command']}`.",
        "",
        f"- exit code {r['exit_code']}, traceback: {'yes' if r['traceback'] else 'no'}, {r['seconds']} s",
        f"- imported {r['imported']}, skipped {r['skipped']}",
        f"- damaged files named in the printed summary: {r['damaged_named_in_summary']} of {r['damaged']}",
        f"- damaged files in import_report.json: {r['damaged_in_report']} of {r['damaged']}",
        "",
        "| file | damage | reason given |",
        "|---|---|---|",
        *[f"| {n} | {v['damage']} | {v['reason']} |" for n, v in sorted(r["reasons"].items())],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=Path("data/archive-src"), help="a stand-in archive (xray simulate --archive)")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--bad", type=float, default=0.05, help="share of the files to damage")
    p.add_argument("--work", type=Path, default=Path("/tmp/xray-import-bench"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    r = run(args.src, args.count, args.bad, args.work, args.seed)
    text = markdown(r)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(r, indent=2))
        args.out.with_suffix(".md").write_text(text)
    return 0 if r["exit_code"] == 0 and r["damaged_in_report"] == r["damaged"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
