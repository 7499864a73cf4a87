"""Engine latency per stage (decode, preprocess, model, postprocess, verify), single stream, and
throughput with N concurrent streams sharing one Engine; on the CPU and, where onnxruntime has
them, on CUDA and TensorRT (benchmarks.providers; their rows say why not otherwise).

Decode is `read_scan` of the two 16-bit PNG files (file read included); the other stages are
the verdict's own `timings_ms` (whose `total` is the sum of the five stages). `detect_batch`
rows time `Engine.detect_batch` on batches of 1, 2 and 4 copies of the decoded 40-ft scan
(decode not included; one session call per input when the graph's batch is fixed at 1).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import providers as gpu
from benchmarks.inputs import CanonicalScan
from benchmarks.stats import per_second, run_threads, summarize
from xray.config import ExecutionConfig
from xray.engine import Engine
from xray.manifest import Manifest
from xray.sources.files import read_scan
from xray.verify import Inspector

STAGES = ("decode", "preprocess", "model", "postprocess", "verify")
BATCH_SIZES = [1, 2, 4]


def inspect_once(inspector: Inspector, scan: CanonicalScan, manifest: Manifest) -> dict[str, float]:
    """Decode and inspect one scan; the time of every stage in ms, and their total."""
    t0 = time.perf_counter()
    s = read_scan(scan.high, scan.low, scan_id=scan.name)
    verdict = inspector.inspect(s, manifest, decode_ms=(time.perf_counter() - t0) * 1e3)
    return {k: verdict.timings_ms[k] for k in (*STAGES, "total")}


def single_stream(engine: Engine, scan: CanonicalScan, n: int, warmup: int = 3) -> dict[str, Any]:
    """`n` inspections one after another after `warmup`; percentiles per stage and the raw totals."""
    manifest, inspector = scan.manifest, Inspector(engine)
    for _ in range(warmup):
        inspect_once(inspector, scan, manifest)
    runs = [inspect_once(inspector, scan, manifest) for _ in range(n)]
    stages = {k: summarize([r[k] for r in runs]) for k in (*STAGES, "total")}
    return {"scan": scan.name, "n": n, "warmup": warmup, "stages_ms": stages,
            "totals_ms": [round(r["total"], 3) for r in runs]}


def concurrent(engine: Engine, scan: CanonicalScan, streams: int, per_stream: int) -> dict[str, Any]:
    """`streams` threads, each inspecting `per_stream` scans back to back on the shared engine."""
    manifest, inspector = scan.manifest, Inspector(engine)
    totals: list[float] = []
    lock = threading.Lock()

    def worker(start: threading.Barrier) -> None:
        start.wait()
        for _ in range(per_stream):
            t0 = time.perf_counter()
            inspect_once(inspector, scan, manifest)
            with lock:
                totals.append((time.perf_counter() - t0) * 1e3)

    wall = run_threads(worker, streams)
    return {"scan": scan.name, "streams": streams, "scans": len(totals), "seconds": round(wall, 3),
            "scans_per_second": per_second(len(totals), wall), "latency_ms": summarize(totals)}


def batches(engine: Engine, scan: CanonicalScan, sizes: list[int], n: int, warmup: int = 2) -> list[dict[str, Any]]:
    """`Engine.detect_batch` of `size` copies of the decoded scan: ms per batch and scans/s."""
    decoded = read_scan(scan.high, scan.low, scan_id=scan.name)
    rows = []
    for size in sizes:
        batch = [decoded] * size
        times = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            engine.detect_batch(batch)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        st = summarize(times)
        rows.append({"batch": size, "batched_graph": engine.batched, "batch_ms": st,
                     "per_scan_ms": round(st["p50"] / size, 3), "scans_per_second": per_second(size * n, sum(times) / 1e3)})
    return rows


def decode_formats(scan: CanonicalScan, n: int) -> dict[str, Any]:
    """`read_scan` of the pair as deflated PNGs (the canonical files) and as stored (uncompressed) PNGs."""
    out = {}
    for label, (high, low) in (("png_deflate", (scan.high, scan.low)), ("png_stored", scan.stored_pair())):
        read_scan(high, low)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            read_scan(high, low)
            times.append((time.perf_counter() - t0) * 1e3)
        out[label] = {"bytes": high.stat().st_size + low.stat().st_size, "decode_ms": summarize(times)}
    return {"scan": scan.name, **out}


def run_provider(model_dir: Path, scans: dict[str, CanonicalScan], execution: ExecutionConfig, *, n: int,
                 streams: list[int], per_stream: int, model_batches: bool = False, quick: bool = False) -> dict[str, Any]:
    """Single-stream latency of every canonical scan and concurrent throughput on the 40-ft one
    (`model_batches`: also the model stage at several batch sizes)."""
    engine = Engine(model_dir, execution=execution)
    engine.warm_up()
    opts = engine.session.get_session_options()
    return {
        "provider": engine.providers[0],  # the one actually running the graph
        "providers": engine.providers,
        **({"model_batches": gpu.batch_rows(engine, quick=quick)} if model_batches else {}),
        "intra_op_threads": opts.intra_op_num_threads,
        "model_input": list(engine.spec.size),
        "single_stream": {name: single_stream(engine, s, n) for name, s in scans.items()},
        "concurrent": [concurrent(engine, scans["40ft"], k, per_stream) for k in streams],
        "detect_batch": batches(engine, scans["40ft"], BATCH_SIZES, n),
    }


def run(model_dir: Path, scans: dict[str, CanonicalScan], *, quick: bool, cache: Path) -> dict[str, Any]:
    """The section: CPU always; CUDA and TensorRT where onnxruntime offers them (otherwise a note says why not)."""
    n, per_stream, streams = (5, 2, [1, 2, 4]) if quick else (50, 10, [1, 2, 4])
    cpu = run_provider(model_dir, scans, ExecutionConfig(provider="cpu"), n=n, streams=streams, per_stream=per_stream)
    out: dict[str, Any] = {"n": n, "decode_formats": decode_formats(scans["40ft"], n), "cpu": cpu}
    out.update(gpu.run(lambda execution: run_provider(model_dir, scans, execution, n=n, streams=streams,
                                                      per_stream=per_stream, model_batches=True, quick=quick),
                       cache=cache, quick=quick))
    return out
