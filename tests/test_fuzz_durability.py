"""kill -9 durability (issue 16, "What to build" 7): a real `xray serve` process is killed with SIGKILL while
inspections stream in; after a restart every inspection it acknowledged (201) is there, with its images intact.
Small here; `make fuzz` runs 1,000 inspections x 3 kills (XRAY_FUZZ_KILL_N, XRAY_FUZZ_KILL_ROUNDS)."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.fuzz import free_port, start_serve

N = int(os.environ.get("XRAY_FUZZ_KILL_N", "24"))
ROUNDS = int(os.environ.get("XRAY_FUZZ_KILL_ROUNDS", "1"))
KEY = "xr_d0d0d0d0_durability-test-key"


def _start(model: Path, data: Path, port: int) -> subprocess.Popen:
    return start_serve(model, data, port, KEY, "--threads", "1", "--workers", "2", "--log-level", "warning")


def _send_until_killed(model: Path, data: Path, scan_files, acknowledged: dict[str, list[str]]) -> None:
    """Start the service, stream N inspections at it from 4 threads, SIGKILL it after N/2 acknowledgements."""
    port = free_port()
    proc = _start(model, data, port)
    url = f"http://127.0.0.1:{port}"
    killed = threading.Event()
    lock = threading.Lock()
    count = [0]

    def send(i: int) -> None:
        scan = scan_files[i % len(scan_files)]
        high, low = scan.high.read_bytes(), scan.low.read_bytes()
        if killed.is_set():
            return
        try:
            r = httpx.post(
                f"{url}/v1/inspections",
                headers={"X-API-Key": KEY},
                timeout=60,
                files={"high": ("h.png", high), "low": ("l.png", low)},
                data={"manifest": scan.manifest.read_text()},
            )
        except httpx.HTTPError:
            return  # cut off by the kill: not acknowledged, so nothing is promised
        if r.status_code == 201:
            with lock:
                acknowledged[r.json()["inspection_id"]] = [hashlib.sha256(b).hexdigest() for b in (high, low)]
                count[0] += 1
                if count[0] >= N // 2 and not killed.is_set():
                    killed.set()
                    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: others are in flight

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, range(N)))
    if not killed.is_set():
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_kill_9_loses_no_acknowledged_inspection(tmp_path, tiny_model_dir, scan_files) -> None:
    data = tmp_path / "data"
    acknowledged: dict[str, list[str]] = {}  # inspection id -> sha256 of what was sent
    for _ in range(ROUNDS):
        _send_until_killed(tiny_model_dir, data, scan_files, acknowledged)

    assert len(acknowledged) >= ROUNDS * (N // 2)
    db = sqlite3.connect(data / "xray.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    port = free_port()
    proc = _start(tiny_model_dir, data, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=30) as c:
            for inspection_id, sent in acknowledged.items():
                got = c.get(f"/v1/inspections/{inspection_id}")
                assert got.status_code == 200, inspection_id
                assert got.json()["image_sha256"] == sent
                for digest in sent:  # the stored image is the one sent, byte for byte
                    stored = next((data / "images" / digest[:2]).glob(f"{digest}.*"))
                    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    finally:
        proc.kill()
        proc.wait(timeout=30)
