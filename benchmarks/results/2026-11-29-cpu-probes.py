"""Session 12's CPU probes (one-off; run from the repository root on a quiet machine):

    .venv/bin/python benchmarks/results/2026-11-29-cpu-probes.py

- reading a 40-ft pair's multipart body (5.5 MB) with `xray.service.upload.read_upload`,
  in 64 KiB chunks as uvicorn delivers them: CPU ms, median of 30;
- the bundled guard's check of the 40-ft canonical scan, and its quantiles at stride 1 and 2.
Needs the canonical scans in benchmarks/cache (any `python -m benchmarks` run writes them).
"""

import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from starlette.requests import Request

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from xray.domain import input_statistics  # noqa: E402
from xray.engine import Engine  # noqa: E402
from xray.service.upload import read_upload  # noqa: E402
from xray.sources.files import ScanFile, decode_scan  # noqa: E402

SCANS = Path("benchmarks/cache/scans")


def cpu_ms(f, n: int = 30) -> float:
    times = []
    for _ in range(n):
        c0 = time.thread_time()
        f()
        times.append(time.thread_time() - c0)
    return round(float(np.median(times)) * 1e3, 2)


def upload() -> float:
    files = {name: (f"{name}.png", (SCANS / f"40ft_{name}.png").read_bytes(), "image/png") for name in ("high", "low")}
    req = httpx.Request("POST", "http://x/", files=files, data={"manifest": (SCANS / "40ft.manifest.json").read_text()})
    body, ctype = req.read(), req.headers["content-type"]
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def parse() -> None:
        it = iter(chunks)

        async def receive() -> dict:
            chunk = next(it, None)
            return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await read_upload(Request({"type": "http", "method": "POST", "headers": headers}, receive), 100 << 20)

    async def many() -> float:
        times = []
        for _ in range(30):
            c0 = time.process_time()
            await parse()
            times.append(time.process_time() - c0)
        return round(float(np.median(times)) * 1e3, 2)

    return asyncio.run(many())


def guard() -> dict[str, float]:
    scan = decode_scan(ScanFile.load(SCANS / "40ft_high.png"), ScanFile.load(SCANS / "40ft_low.png"))
    engine = Engine(threads=1)
    whole = engine.model_inputs(scan)[0]
    out = engine.run_many([whole.x])[0]
    wanted = set(engine.guard.references)
    stats = {
        f"stats+profile+blocking, quantile stride {k}": cpu_ms(
            lambda k=k: input_statistics(whole.x, whole.lb.resized_hw, scan, ratio_channel=2, wanted=wanted, quantile_stride=k)
        )
        for k in (1, 2)
    }
    return {"guard check (the card's stride)": cpu_ms(lambda: engine.domain_check(whole, out, scan)), **stats}


if __name__ == "__main__":
    print("read_upload, 40-ft pair, CPU ms:", upload())
    for k, v in guard().items():
        print(f"{k}: {v} ms")
