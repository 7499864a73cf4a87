"""Simulator throughput: full-resolution dual-energy scans written per second.

    python -m benchmarks.simulator --count 100 --size 40ft --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.machine import machine_info
from xray.simulate.dataset import generate_dataset


def run(count: int, size: str, workers: int, compress: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        s = generate_dataset(Path(tmp) / "ds", count=count, seed=1, size=size, workers=workers, compress=compress,
                             progress=False)
    return {"count": count, "size": size, "workers": workers, "png_compressed": compress,
            "seconds": s["seconds"], "scans_per_second": s["scans_per_second"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", default="40ft")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--compress", action="store_true")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    result = {"benchmark": "simulator", "time": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine_info(), **run(args.count, args.size, args.workers, args.compress)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"simulator-{result['time'][:10]}-{os.uname().nodename}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
