"""Shared pytest fixtures."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

TINY_CONFIG = Path(__file__).resolve().parents[1] / "models" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small exported model (model.onnx + model.json): tiny.yaml trained 1 epoch on 4 fixture scans.

    Built once per test session; its detections mean little, but it runs through the
    same export and engine code as a real model.
    """
    import torch
    from fixtures_dataset import write_dataset

    from xray.export import export
    from xray.train.loop import fit

    torch.set_num_threads(2)
    base = tmp_path_factory.mktemp("tiny_model")
    data = write_dataset(base / "ds", splits={"train": 4}, seed=3)
    fit(data=data, config=TINY_CONFIG, out=base / "run", epochs=1, device="cpu", progress=False, plots=False)
    out = base / "tiny"
    export(base / "run" / "best.pt", out, parity_n=1)
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path):
    """One loaded, warmed engine on the tiny model, shared by the service tests."""
    from xray.engine import Engine

    engine = Engine(tiny_model_dir, threads=1)
    engine.warm_up()
    return engine


@dataclass(frozen=True)
class ScanFiles:
    """One fixture scan on disk: high- and low-energy 16-bit PNGs and its manifest JSON."""

    scan_id: str
    high: Path
    low: Path
    manifest: Path


@pytest.fixture(scope="session")
def scan_files(tmp_path_factory: pytest.TempPathFactory) -> list[ScanFiles]:
    """Four small (128 x 384) dual-energy fixture scans with manifests."""
    from fixtures_dataset import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("scans") / "ds", splits={"test": 4}, seed=11)
    return [ScanFiles(f"s{n:06d}", root / "images" / "test" / f"s{n:06d}_high.png",
                      root / "images" / "test" / f"s{n:06d}_low.png", root / "manifests" / f"s{n:06d}.json")
            for n in range(1, 5)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start (see the log above)")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server():
    """`with live_server(app) as url:` runs the app on a real socket (lifespan included)."""
    return serving


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster on loopback (2 CPUs, no dashboard), started once for all the Ray tests."""
    ray = pytest.importorskip("ray")
    from xray.service.ray_serve import proxy_environment

    proxy_environment()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
