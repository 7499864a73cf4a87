"""Archive re-scoring throughput: `xray rescore` in one process and on a local Ray cluster (Ray Data actors),
the same scans both ways, with how many verdicts agree; `--stop-after` also stops the Ray run by killing it
(its process group: driver and local cluster) after some committed parts, then resumes it.

    python -m benchmarks.rescore --data data/sim --count 2000 --work /tmp/rescore [--stop-after 3]

The archive is COUNT scans of DATA, linked (not copied) into WORK/archive.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from xray.bundled import default_model_dir

COMPARED = ["verdict", "channel", "risk", "findings"]


def subset_archive(data: Path, count: int, work: Path) -> Path:
    """An archive of the first `count` scans of `data` (all splits, in order): its annotations, and links
    to its images and manifests."""
    from xray.data.format import load_coco, splits

    root = work / f"archive-{count}"
    if (root / "annotations" / "all.json").is_file():
        return root
    images: list[dict[str, Any]] = []
    categories: list[Any] = []
    for split in splits(data):
        coco = load_coco(data, split)
        categories = coco["categories"]
        images += coco["images"][: count - len(images)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for name in ("images", "manifests"):
        if not (root / name).exists():
            (root / name).symlink_to((data / name).resolve())
    coco = {"images": images, "annotations": [], "categories": categories}
    (root / "annotations" / "all.json").write_text(json.dumps(coco))
    return root


def _command(archive: Path, out: Path, store: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xray.cli",
        "rescore",
        str(archive),
        "--out",
        str(out),
        "--model",
        str(model),
        "--data-dir",
        str(store),
        "--quiet",
        *extra,
    ]


def _run(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _killed_after(cmd: list[str], parts: Path, stop_after: int) -> tuple[int, float]:
    """Run `cmd` in its own process group and kill the group once `stop_after` parts are committed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and len(list(parts.glob("part-*.parquet"))) < stop_after:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return len(list(parts.glob("part-*.parquet"))), time.perf_counter() - t0


def compare(a: Path, b: Path) -> dict[str, Any]:
    """How many scans have the same verdict in two outputs; ids written more than once."""
    from xray.rescore import Output

    ta, tb = Output(a).read(), Output(b).read()
    ids_b = tb.column("scan_id").to_pylist()
    rows_a = {r["scan_id"]: r for r in ta.select(["scan_id", *COMPARED]).to_pylist()}
    rows_b = {r["scan_id"]: r for r in tb.select(["scan_id", *COMPARED]).to_pylist()}
    same = sum(rows_b.get(k) == v for k, v in rows_a.items())
    close = sum(
        k in rows_b
        and rows_b[k]["channel"] == v["channel"]
        and rows_b[k]["verdict"] == v["verdict"]
        and abs((rows_b[k]["risk"] or 0) - (v["risk"] or 0)) <= 1e-6
        for k, v in rows_a.items()
    )
    return {
        "scans": len(rows_a),
        "identical": same,
        "same_channel_and_risk_1e-6": close,
        "rows_b": len(ids_b),
        "written_twice_b": len(ids_b) - len(set(ids_b)),
        "missing_b": len(set(rows_a) - set(rows_b)),
    }


def measure(
    data: Path,
    count: int,
    work: Path,
    *,
    model: Path | None = None,
    stop_after: int = 0,
    part_size: int = 100,
    workers: int = 2,
) -> dict[str, Any]:
    """Re-score `count` scans of `data` in one process and on a local Ray cluster (2 CPUs); compare."""
    from xray.service.store import Store

    model = (model or default_model_dir()).resolve()
    work.mkdir(parents=True, exist_ok=True)
    archive = subset_archive(data, count, work)
    size = ["--part-size", str(part_size)]
    local = _run(_command(archive, work / "local", work / "store-local", model, *size))
    ray_cmd = _command(archive, work / "ray", work / "store-ray", model, *size, "--ray", "--workers", str(workers))
    result: dict[str, Any] = {"scans": count, "one_process": local}
    if stop_after:
        parts, wall = _killed_after(ray_cmd, work / "ray" / "parts", stop_after)
        result["ray_stopped"] = {"parts_committed": parts, "killed_after_s": round(wall, 1)}
    result["ray"] = _run(ray_cmd)
    result["comparison"] = compare(work / "local", work / "ray")
    store = Store(work / "store-ray")
    try:
        result["comparison"]["store_records_ray"] = store.count()
    finally:
        store.close()
    return result


def run(model_dir: Path, data: Path, cache: Path, *, quick: bool) -> dict[str, Any]:
    """The benchmark row: skipped in --quick (starting a Ray cluster alone takes ~10 s on 2 cores)."""
    if quick:
        return {"status": "skipped in --quick"}
    import shutil

    work = cache / "rescore"
    shutil.rmtree(work, ignore_errors=True)
    return measure(data, 200, work, model=model_dir, part_size=50)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rescore", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/sim"))
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--work", type=Path, required=True, help="folder for the archive links, outputs and stores")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--stop-after", type=int, default=0, help="kill the Ray run after this many parts, then resume")
    p.add_argument("--part-size", type=int, default=100)
    args = p.parse_args(argv)
    print(
        json.dumps(
            measure(
                args.data, args.count, args.work, model=args.model, stop_after=args.stop_after, part_size=args.part_size
            ),
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
