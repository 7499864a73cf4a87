"""End to end over HTTP: the real service (`serve.py` in a subprocess on 127.0.0.1, a free port,
a temporary data folder) driven by a separate load-generator process (`benchmarks.loadgen`)
at concurrency 1, 4 and 16. The service runs with its defaults (2 inspection workers,
8 inspections in flight, micro-batching on), so concurrency 16 overloads it and shows the 503s.
A second service with micro-batching off (`--batch-window-ms 0`) runs concurrency 1 and 4,
for the comparison.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from benchmarks.inputs import CanonicalScan

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`serve.py` in a subprocess; a context manager that waits for /readyz and stops it after."""

    def __init__(self, model_dir: Path, data_dir: Path, log_path: Path, *, max_in_flight: int = 8,
                 extra: Sequence[str] = (), ready_timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = secrets.token_urlsafe(24)
        self.args = [sys.executable, str(ROOT / "serve.py"), "--model", str(model_dir), "--host", "127.0.0.1",
                     "--port", str(self.port), "--data-dir", str(data_dir), "--max-in-flight", str(max_in_flight),
                     "--log-level", "warning", *extra]
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        env = {**os.environ, "XRAY_API_KEY": self.api_key, "PYTHONPATH": str(ROOT)}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve.py exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    if c.get("/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"serve.py not ready after {self.ready_timeout:.0f} s: {self.log_tail()}")
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, chars: int = 1500) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")


def load(service: Service, scan: CanonicalScan, concurrency: int, requests: int, timeout: float) -> dict[str, Any]:
    """Run the load generator in its own process against the service; its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--url", service.url, "--high", str(scan.high),
           "--low", str(scan.low), "--manifest", str(scan.manifest_path), "--concurrency", str(concurrency),
           "--requests", str(requests), "--timeout", str(timeout)]
    env = {**os.environ, "XRAY_API_KEY": service.api_key, "PYTHONPATH": str(ROOT)}
    budget = timeout * requests / max(1, concurrency) + 120  # every request timing out, plus start-up
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"load generator failed ({r.returncode}): {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def batches(service: Service) -> tuple[float, float]:
    """Scans and engine batches so far, from the service's `xray_engine_batch_size` histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=service.url, timeout=10.0, trust_env=False) as c:
        text = c.get("/metrics", headers={"X-API-Key": service.api_key}).text
    found = {s.name: s.value for f in text_string_to_metric_families(text) if f.name == "xray_engine_batch_size"
             for s in f.samples}
    return found.get("xray_engine_batch_size_sum", 0.0), found.get("xray_engine_batch_size_count", 0.0)


def measured(service: Service, scan: CanonicalScan, concurrency: int, requests: int, timeout: float) -> dict[str, Any]:
    """`load`, with the mean number of scans per engine batch during it (None: no batch ran)."""
    scans0, batches0 = batches(service)
    result = load(service, scan, concurrency, requests, timeout)
    scans1, batches1 = batches(service)
    ran = batches1 - batches0
    return {**result, "mean_batch_size": round((scans1 - scans0) / ran, 2) if ran else None}


def service_defaults() -> dict[str, Any]:
    """The service's threads and micro-batching when none are given (their one home: `Settings`)."""
    from xray.service.settings import Settings

    defaults = Settings()
    return {k: getattr(defaults, k) for k in ("workers", "threads", "batch_window_ms", "max_batch")}


def run(model_dir: Path, scans: dict[str, CanonicalScan], *, quick: bool) -> dict[str, Any]:
    """The section: warm the service with a few requests, then concurrency 1, 4 and 16 on the 40-ft scan;
    then concurrency 1 and 4 again on a service with micro-batching off."""
    plan = {1: 4, 4: 8, 16: 32} if quick else {1: 50, 4: 100, 16: 160}
    timeout = 60.0
    scan = scans["40ft"]
    off = ["--batch-window-ms", "0"]
    out: dict[str, Any] = {}
    for key, extra, concurrencies in (("runs", (), plan), ("runs_batching_off", off, (1, 4))):
        with (tempfile.TemporaryDirectory(prefix="xray-bench-http-") as tmp,
              Service(model_dir, Path(tmp) / "data", Path(tmp) / "serve.log", extra=extra) as service):
            warm = load(service, scan, 1, 3, timeout)
            out[key] = [measured(service, scan, c, plan[c], timeout) for c in concurrencies]
            out[f"warmup_ok{'' if key == 'runs' else '_batching_off'}"] = warm["ok"]
    defaults = service_defaults()
    return {"scan": scan.name, "upload_bytes": scan.upload_bytes, "max_in_flight": 8,
            "workers": defaults.pop("workers"), "threads": defaults.pop("threads"), "batching": defaults, **out,
            "note": "service and load generator share the machine's cores"}
