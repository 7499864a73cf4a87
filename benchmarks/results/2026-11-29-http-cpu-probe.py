"""CPU per inspection in the service (session 14, issue 17's analysis).

    PYTHONPATH=. python benchmarks/results/2026-11-29-http-cpu-probe.py CONCURRENCY REQUESTS [serve.py flags]

Starts `serve.py` with the bundled model (as `benchmarks.http_latency` does), warms it with 3
requests, then runs `benchmarks.loadgen` and reads the server process's CPU time (utime + stime)
from /proc before and after: the service's CPU per inspection, beside the rate and latencies.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from benchmarks.http_latency import Service, load
from benchmarks.inputs import canonical_scans
from xray.bundled import default_model_dir


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    concurrency, requests, extra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    scan = canonical_scans(Path("benchmarks/cache"))["40ft"]
    with (tempfile.TemporaryDirectory() as tmp,
          Service(default_model_dir(), Path(tmp) / "data", Path(tmp) / "log", extra=extra) as service):
        load(service, scan, 1, 3, 60)
        assert service.proc is not None
        before = cpu_seconds(service.proc.pid)
        r = load(service, scan, concurrency, requests, 60)
        used = cpu_seconds(service.proc.pid) - before
    print(f"concurrency {concurrency}: {r['inspections_per_second']}/s, p50 {r['latency_ms']['p50']} ms, "
          f"p99 {r['latency_ms']['p99']} ms; service CPU {used / requests * 1e3:.1f} ms an inspection, "
          f"load generator {r['client_cpu_ms_per_request']} ms")


if __name__ == "__main__":
    main()
