"""The HTTP load generator: a separate process that drives the inspection service.

    python -m benchmarks.loadgen --url http://127.0.0.1:PORT --high H.png --low L.png \
        --manifest M.json --concurrency 4 --requests 40 [--timeout 60]

`concurrency` clients in a closed loop send `POST /v1/inspections` until `requests` have
been sent in all. A client answered 503 waits the Retry-After the service asks for (at
most 1 s) before its next request, as a well-behaved client would. Prints one JSON object:
per-status counts, latencies of the 201s (and the decode + engine time the service
reports in each), throughput of the 201s, errors. The API key
comes from $XRAY_API_KEY. Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from benchmarks.stats import per_second, run_threads, summarize

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_side_ms(response: httpx.Response) -> float | None:
    """Decode + engine time the service reports in the inspection's `timings_ms` (None if absent)."""
    try:
        t = response.json()["timings_ms"]
        return float(t["total"])  # decode included
    except (ValueError, KeyError, TypeError):
        return None


def drive(url: str, high: bytes, low: bytes, manifest: str, *, api_key: str, concurrency: int, requests: int,
          timeout: float) -> dict:
    """Run the closed-loop load; see the module docstring."""
    if urlparse(url).hostname not in LOOPBACK:
        raise ValueError(f"the load generator only talks to loopback addresses, not {url}")
    lock = threading.Lock()
    left = [requests]
    ok_ms: list[float] = []
    server_ms: list[float | None] = []
    busy_ms: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []

    def client(start: threading.Barrier) -> None:
        # trust_env=False: never route loopback traffic through a proxy from the environment.
        with httpx.Client(base_url=url, timeout=timeout, trust_env=False, headers={"X-API-Key": api_key}) as c:
            start.wait()
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/inspections", files={"high": ("bench_high.png", high, "image/png"),
                                                         "low": ("bench_low.png", low, "image/png")},
                               data={"manifest": manifest})
                    ms = (time.perf_counter() - t0) * 1e3
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    ms, key, r = (time.perf_counter() - t0) * 1e3, type(e).__name__, None
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
                    if key == "201":
                        ok_ms.append(ms)
                        server_ms.append(server_side_ms(r))
                    elif key == "503":
                        busy_ms.append(ms)
                    elif len(errors) < 5:
                        errors.append(f"{key}: {r.text[:200] if r is not None else ''}")
                if r is not None and r.status_code == 503:
                    time.sleep(min(1.0, float(r.headers.get("retry-after", "1") or 1)))

    cpu0 = time.process_time()
    wall = run_threads(client, concurrency)
    client_cpu_ms = (time.process_time() - cpu0) * 1e3
    n_ok = len(ok_ms)
    return {"concurrency": concurrency, "requests": requests, "seconds": round(wall, 3), "ok": n_ok,
            "status_counts": dict(sorted(statuses.items())), "rejected_503": statuses.get("503", 0),
            "errors": sum(v for k, v in statuses.items() if k not in ("201", "503")), "error_samples": errors,
            "inspections_per_second": per_second(n_ok, wall), "latency_ms": summarize(ok_ms),
            "rejection_latency_ms": summarize(busy_ms), "latencies_ms": [round(v, 2) for v in ok_ms],
            "server_decode_engine_ms": summarize([v for v in server_ms if v is not None]),
            # The cores the load generator itself took from the service it shares them with.
            "client_cpu_ms_per_request": round(client_cpu_ms / max(1, requests), 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--high", type=Path, required=True)
    p.add_argument("--low", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    result = drive(args.url, args.high.read_bytes(), args.low.read_bytes(), args.manifest.read_text(),
                   api_key=os.environ.get("XRAY_API_KEY", ""), concurrency=args.concurrency,
                   requests=args.requests, timeout=args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
