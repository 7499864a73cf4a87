"""PNG decoders on the canonical 40-ft dual-energy pair, decoded as the engine does (session 18, issue 17).

    PYTHONPATH=. python benchmarks/results/2026-12-07-png-decoders.py [CACHE]

Both energies decode at once, one on a second thread (`xray.sources.files.decode_scan`), 40 rounds,
the decoders interleaved; wall time and the process's CPU time per pair, median. Also the inflate
of one image's IDAT alone with zlib, imagecodecs' zlib and zlib-ng, and Pillow's decode (its wheels
carry zlib-ng): where a faster inflate would have to come from.
"""

from __future__ import annotations

import io
import resource
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
from PIL import Image

from benchmarks.inputs import canonical_scans


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idat(data: bytes) -> bytes:
    pos, out = 8, b""
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            out += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    return out


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


def median_ms(fn: Callable[[], object], n: int = 20) -> float:
    times = []
    for _ in range(n):
        t = cpu_s()
        fn()
        times.append(cpu_s() - t)
    return float(np.median(times)) * 1e3


def main() -> None:
    scan = canonical_scans(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/cache"))["40ft"]
    high, low = scan.high.read_bytes(), scan.low.read_bytes()
    decoders: dict[str, Callable[[bytes], np.ndarray]] = {
        "opencv (libpng + zlib)": lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED),
        "imagecodecs png_decode": imagecodecs.png_decode,
        "Pillow": pillow,
    }
    reference = decoders["opencv (libpng + zlib)"](high)
    pool = ThreadPoolExecutor(1)
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in decoders}
    for name, fn in decoders.items():
        assert np.array_equal(fn(high), reference), name
    for _ in range(40):
        for name, fn in decoders.items():
            c, t = cpu_s(), time.perf_counter()
            other = pool.submit(fn, low)
            fn(high)
            other.result()
            times[name][0].append(time.perf_counter() - t)
            times[name][1].append(cpu_s() - c)
    print("| decoder, 40-ft 16-bit pair (2 threads) | wall p50 ms | CPU p50 ms |\n|---|---|---|")
    for name, (wall, cpu) in times.items():
        print(f"| {name} | {np.median(wall) * 1e3:.1f} | {np.median(cpu) * 1e3:.1f} |")
    body = idat(high)
    print("\n| inflate of one image's IDAT | CPU p50 ms |\n|---|---|")
    for name, fn in {
        "zlib (CPython)": lambda: zlib.decompress(body),
        "imagecodecs zlib": lambda: imagecodecs.zlib_decode(body),
        "imagecodecs zlib-ng": lambda: imagecodecs.zlibng_decode(body),
        "imagecodecs libdeflate": lambda: imagecodecs.deflate_decode(body),
    }.items():
        print(f"| {name} | {median_ms(fn):.1f} |")


if __name__ == "__main__":
    main()
