"""Fuzz the running service as an attacker and a careless client would, and write what happened.

    python -m benchmarks.fuzz [--requests 10000] [--concurrency 8] [--model DIR] [--out benchmarks/results]

Starts `xray serve` (default limits, the bundled model) in a subprocess and sends a seeded mix of
requests: valid inspections, mutated scan files, decompression bombs, hostile manifests and review
bodies, bad keys, odd query parameters and paths, malformed multipart bodies, plus slow uploads that
stall. Counts answers by status code, dropped connections (the server closed or reset a connection
without an answer), hangs (no answer in 30 s) and the server's peak RSS (VmHWM), and writes
``fuzz-<date>.md`` under --out. The exit status is 1 when the issue-16 targets are missed:
any answer >= 500, a dropped connection, a hang, or a peak RSS of 2 GB or more.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import tifffile

from xray.bundled import default_model_dir
from xray.sources.files import write_png16

ROOT = Path(__file__).resolve().parent.parent
KEY = "xr_f0f0f0f0_fuzzing-key-not-secret"
HANG_S = 30.0
RSS_LIMIT = 2 << 30


def _png16(rng: np.random.Generator, h: int = 256, w: int = 640) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return write_png16(Path(d) / "s.png", rng.random((h, w)) * 0.9 + 0.05).read_bytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bombs() -> list[tuple[str, bytes]]:
    zeros = zlib.compress(b"\0" * (8001 * 8000), 9)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zeros)
        + _chunk(b"IEND", b"")
    )
    jpg = bytearray(cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes())
    struct.pack_into(">HH", jpg, jpg.find(b"\xff\xc0") + 5, 8000, 8000)
    tif = io.BytesIO()
    tifffile.imwrite(tif, np.zeros((6000, 6000), np.uint16), compression="zlib")
    return [("zeros.png", png), ("claim.jpg", bytes(jpg)), ("zeros.tif", tif.getvalue())]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(max(len(b), 1))
        op = rng.choice(["flip", "cut", "truncate", "size"])
        if op == "flip" and b:
            b[pos] = rng.randrange(256)
        elif op == "cut":
            del b[pos : pos + rng.randint(1, 200)]
        elif op == "truncate":
            del b[pos:]
        elif pos + 4 <= len(b):
            b[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x1f\x40", b"\x00\x00\x00\x00"])
    return bytes(b)


MANIFEST = {"container_id": "FUZZ1234567", "lines": [{"hs_code": "8703", "description": "cars", "quantity": 2}]}
HOSTILE_MANIFESTS = [
    '{"container_id": "C", "lines": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"container_id": "C", "lines": [{"hs_code": "8703", "quantity": ' + "9" * 5000 + "}]}",
    '{"container_id": "C", "lines": [{"hs_code": "8703", "quantity": Infinity}]}',
    '{"container_id": "C", "lines": [{"hs_code": "８７０３"}]}',
    '{"container_id": "C\\u0000D", "lines": []}',
    '{"container_id": "\\ud800", "lines": []}',
    "not json at all",
    "",
    "[]",
    "null",
    '{"container_id": 5}',
    "{" * 100_000,
]


class Fuzzer:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        nprng = np.random.default_rng(seed)
        self.scans = [_png16(nprng) for _ in range(4)]
        self.bombs = _bombs()
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.local = threading.local()

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "c"):
            self.local.c = httpx.Client(base_url=self.url, timeout=HANG_S)
        return self.local.c

    def request(self, i: int) -> dict[str, Any]:
        rng = random.Random(self.rng.random() + i)
        kind = rng.choices(
            ["valid", "mutated", "bomb", "manifest", "key", "review", "query", "path", "multipart"],
            weights=[8, 20, 4, 12, 8, 16, 12, 10, 10],
        )[0]
        key = {"X-API-Key": KEY}
        scan = rng.choice(self.scans)
        kw: dict[str, Any] = {"method": "POST", "url": "/v1/inspections", "headers": key}
        if kind == "valid":
            kw.update(files={"scan": ("s.png", scan)}, data={"manifest": json.dumps(MANIFEST)})
        elif kind == "mutated":
            kw.update(
                files={"scan": (rng.choice(["s.png", "s.dcm", "s.tif", "s.jpg"]), _mutate(rng, scan))},
                data={"manifest": json.dumps(MANIFEST)},
            )
        elif kind == "bomb":
            name, data = rng.choice(self.bombs)
            kw.update(files={"scan": (name, data)}, data={"manifest": json.dumps(MANIFEST)})
        elif kind == "manifest":
            kw.update(
                files={"scan": ("s.png", scan)},
                data={"manifest": rng.choice(HOSTILE_MANIFESTS), "scan_id": rng.choice(["a", "b\x00", "x" * 300])},
            )
        elif kind == "key":
            kw.update(
                method="GET",
                url="/v1/inspections",
                headers={"X-API-Key": rng.choice(["", "xr_00000000_nope", "x" * 5000, KEY[:-1], "xr_" + "_" * 9])},
            )
        elif kind == "review":
            target = rng.choice(self.ids) if self.ids else "01H00000000000000000000000"
            body = rng.choice(
                [
                    b'{"decision": "confirm", "reviewer": "\\ud800"}',
                    b"\xff\xfe\x80 text",
                    b'{"decision": "override", "reviewer": "a"}',
                    b"[" * 5000,
                    b'{"decision": "confirm", "reviewer": "ana"}',
                    json.dumps(
                        {"decision": "override", "channel": "red", "reviewer": "b", "note": "x" * rng.choice([5, 3000])}
                    ).encode(),
                ]
            )
            ctype = rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])
            kw.update(url=f"/v1/inspections/{target}/review", content=body, headers={**key, "Content-Type": ctype})
        elif kind == "query":
            params = {
                rng.choice(["since", "limit", "cursor", "channel", "x"]): rng.choice(
                    [
                        "1700000000",
                        "2026-01-31",
                        "2026-13-01",
                        "-1",
                        "501",
                        "0",
                        "red",
                        "\x00",
                        "9" * 400,
                        "2026-01-31T08:00:00+25:00",
                        "01H00000000000000000000000",
                    ]
                )
                for _ in range(3)
            }
            kw.update(method="GET", url="/v1/inspections", params=params)
        elif kind == "path":
            target = (
                rng.choice(self.ids)
                if self.ids and rng.random() < 0.5
                else rng.choice(["..%2f..%2fetc%2fpasswd", "%00", "x" * 2000, "01H00000000000000000000000"])
            )
            kw.update(
                method=rng.choice(["GET", "DELETE", "PUT"]),
                url=rng.choice(
                    [
                        f"/v1/inspections/{target}",
                        f"/v1/inspections/{target}/overlay.png",
                        "/metrics",
                        "/docs",
                        "/openapi.json",
                        "/readyz",
                        "/nope",
                        "/app.js",
                    ]
                ),
            )
        else:
            kw.update(
                content=bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000))),
                headers={
                    **key,
                    "Content-Type": rng.choice(
                        ["multipart/form-data; boundary=b", "multipart/form-data", "application/json"]
                    ),
                },
            )
        t0 = time.monotonic()
        try:
            r = self.client().request(**kw)
        except httpx.TimeoutException:
            return {"kind": kind, "outcome": "hang", "s": time.monotonic() - t0}
        except httpx.HTTPError as e:
            return {"kind": kind, "outcome": f"dropped ({type(e).__name__})", "s": time.monotonic() - t0}
        if r.status_code == 201:
            with self.lock:
                self.ids.append(r.json()["inspection_id"])
        return {"kind": kind, "outcome": str(r.status_code), "s": time.monotonic() - t0}


def stalled_uploads(url: str, n: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=60)
        s.sendall(
            (
                f"POST /v1/inspections HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\nContent-Length: 99999\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            ).encode()
        )
        socks.append(s)
    return socks


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    """A free TCP port on the loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(model: Path, data: Path, port: int, key: str, *options: str, ready_s: float = 90.0) -> subprocess.Popen:
    """A real `xray serve` process on 127.0.0.1:`port`, returned once /readyz answers 200.

    Raises:
        RuntimeError: the process exited during start-up, or was not ready within `ready_s`.
    """
    cmd = [sys.executable, "-m", "xray.cli", "serve", "--model", str(model), "--data-dir", str(data)]
    cmd += ["--port", str(port), "--api-key", key, *options]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("xray serve exited during start-up")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("xray serve did not become ready")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    model = args.model or default_model_dir()
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="xray-fuzz-"))
    try:
        server = start_serve(model, data, port, KEY, "--log-level", "error", ready_s=120)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    url = f"http://127.0.0.1:{port}"
    try:
        fuzzer = Fuzzer(url, args.seed)
        t0 = time.monotonic()
        stalled = stalled_uploads(url, 8)  # held open for the whole run: they must block no one
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(fuzzer.request, range(args.requests)))
        stall_answers = []
        for s in stalled:
            try:
                stall_answers.append(s.recv(64).decode("latin-1").split("\r\n")[0])
            except OSError as e:
                stall_answers.append(f"error {e}")
            s.close()
        wall = time.monotonic() - t0
        alive = server.poll() is None
        rss = peak_rss(server.pid) if alive else 0
    finally:
        server.terminate()
        server.wait(timeout=60)
    by_outcome = Counter(r["outcome"] for r in results)
    by_kind: dict[str, Counter] = {}
    for r in results:
        by_kind.setdefault(r["kind"], Counter())[r["outcome"]] += 1
    errors = sum(n for o, n in by_outcome.items() if o.isdigit() and int(o) >= 500 and o not in ("503", "507"))
    server_5xx = sum(n for o, n in by_outcome.items() if o.isdigit() and int(o) >= 500)
    dropped = sum(n for o, n in by_outcome.items() if o.startswith("dropped"))
    hangs = by_outcome.get("hang", 0)
    ok = alive and server_5xx == 0 and dropped == 0 and hangs == 0 and rss < RSS_LIMIT
    slowest = max((r["s"] for r in results), default=0.0)
    lines = [
        f"# Fuzzing the service — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m benchmarks.fuzz --requests {args.requests} --concurrency {args.concurrency} "
        f"--seed {args.seed}` against `xray serve` with default limits and the model in `{model}`;",
        f"8 stalled uploads held open throughout. Wall time {wall:.0f} s.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| responses >= 500 | {server_5xx} (of which not 503/507: {errors}) | {server_5xx == 0} |",
        f"| dropped connections | {dropped} | {dropped == 0} |",
        f"| hangs > {HANG_S:.0f} s | {hangs} (slowest answer {slowest:.1f} s) | {hangs == 0} |",
        f"| server peak RSS (VmHWM) | {rss / 2**20:.0f} MiB | {0 < rss < RSS_LIMIT} |",
        f"| server alive at the end | {alive} | {alive} |",
        f"| stalled uploads answered | {', '.join(sorted(set(stall_answers)))} | |",
        "",
        "## Requests by status",
        "",
        "| outcome | requests |",
        "|---|---|",
    ]
    lines += [f"| {o} | {n} |" for o, n in sorted(by_outcome.items())]
    lines += ["", "## By kind of request", "", "| kind | outcomes |", "|---|---|"]
    lines += [f"| {k} | {', '.join(f'{o}: {n}' for o, n in sorted(c.items()))} |" for k, c in sorted(by_kind.items())]
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"fuzz-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
