"""Concurrency: parallel inspections all recorded, overload answered with 503 (never a hang), restarts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from xray.service import Settings, create_app


class HeldEngine:
    """The real engine, except that `detect` waits until the test lets it go."""

    def __init__(self, engine):
        self._engine = engine
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def detect(self, scan):
        self.entered.release()
        assert self.release.wait(timeout=30), "the test never released the engine"
        return self._engine.detect(scan)


def post_scan(url: str, key: str | None, scan, timeout: float = 30) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    files = {"high": (scan.high.name, scan.high.read_bytes()), "low": (scan.low.name, scan.low.read_bytes())}
    return httpx.post(f"{url}/v1/inspections", files=files, data={"manifest": scan.manifest.read_text()},
                      headers=headers, timeout=timeout)


def test_parallel_inspections_are_all_recorded_with_unique_ids(tmp_path, tiny_engine, live_server, scan_files) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth=False, max_in_flight=64, workers=2), engine=tiny_engine)
    with live_server(app) as url, ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda i: post_scan(url, None, scan_files[i % len(scan_files)]), range(32)))
        assert [r.status_code for r in responses] == [201] * 32
        ids = [r.json()["inspection_id"] for r in responses]
        assert len(set(ids)) == 32
        listed = httpx.get(f"{url}/v1/inspections", params={"limit": 100}).json()["items"]
        assert sorted(i["inspection_id"] for i in listed) == sorted(ids)
        assert app.state.store.count() == 32
        for r in responses:  # each response is what was recorded
            assert httpx.get(f"{url}/v1/inspections/{r.json()['inspection_id']}").json() == r.json()


def test_overload_gives_503_with_retry_after_at_once(tmp_path, tiny_engine, live_server, scan_files) -> None:
    engine = HeldEngine(tiny_engine)
    app = create_app(Settings(data_dir=tmp_path, auth=False, max_in_flight=1, workers=1, retry_after_s=2),
                     engine=engine)
    with live_server(app) as url, ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(post_scan, url, None, scan_files[0])
        assert engine.entered.acquire(timeout=30)  # the first inspection holds the only slot
        busy = post_scan(url, None, scan_files[1], timeout=10)  # would time out if it were queued
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2" and "in flight" in busy.json()["detail"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "xray_inspections_in_flight 1.0" in metrics
        assert 'xray_inspections_rejected_total{reason="overloaded"} 1.0' in metrics
        engine.release.set()
        assert first.result(timeout=30).status_code == 201
        assert post_scan(url, None, scan_files[1]).status_code == 201  # the slot is free again
        assert app.state.store.count() == 2  # the refused request left no record


def test_a_burst_beyond_the_limit_splits_into_201_and_503_without_hanging(tmp_path, tiny_engine, live_server,
                                                                          scan_files) -> None:
    engine = HeldEngine(tiny_engine)
    app = create_app(Settings(data_dir=tmp_path, auth=False, max_in_flight=2, workers=1), engine=engine)
    with live_server(app) as url, ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(post_scan, url, None, scan_files[i % 4], 20) for i in range(10)]
        assert engine.entered.acquire(timeout=30)
        # Two are admitted (one running, one waiting for the only worker); the other eight
        # must be answered while those two are still held, i.e. refused, not queued.
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < 8:
            assert time.monotonic() < deadline, "refusals did not come back while the engine was held"
            time.sleep(0.05)
        refused = [f.result().status_code for f in futures if f.done()]
        engine.release.set()
        codes = sorted(f.result(timeout=30).status_code for f in futures)
    assert refused == [503] * 8
    assert codes == [201] * 2 + [503] * 8
    assert app.state.store.count() == 2


def test_restart_keeps_history_and_key(tmp_path, tiny_model_dir, live_server, scan_files) -> None:
    settings = Settings(model_dir=tiny_model_dir, data_dir=tmp_path, threads=1)  # the lifespan loads the model
    first = create_app(settings)
    with live_server(first) as url:
        key = first.state.new_api_key
        assert key
        ids = [post_scan(url, key, s).json()["inspection_id"] for s in scan_files[:2]]
        review = httpx.post(f"{url}/v1/inspections/{ids[0]}/review", headers={"X-API-Key": key},
                            json={"decision": "override", "channel": "red", "reviewer": "night shift"})
        assert review.status_code == 200
    second = create_app(settings)
    with live_server(second) as url:
        assert second.state.new_api_key is None  # the stored key is kept, no new one
        listed = httpx.get(f"{url}/v1/inspections", headers={"X-API-Key": key}).json()["items"]
        assert [i["inspection_id"] for i in listed] == ids[::-1]
        got = httpx.get(f"{url}/v1/inspections/{ids[0]}", headers={"X-API-Key": key}).json()
        assert got["review"]["channel"] == "red" and got["review"]["reviewer"] == "night shift"
        overlay = httpx.get(f"{url}/v1/inspections/{ids[1]}/overlay.png", headers={"X-API-Key": key})
        assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
        assert httpx.get(f"{url}/v1/inspections").status_code == 401
