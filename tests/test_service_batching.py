"""Micro-batching: concurrent scans run as one engine batch, each caller gets its own result or error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from xray.detection import Detection, Detections
from xray.errors import ConfigError, ScanError
from xray.scan import Scan, ScanKind
from xray.service import Settings, create_app
from xray.service.batching import MicroBatcher

BAD = "bad"  # scan id the fake engine refuses


class BatchEngine:
    """Records the size of every engine call; refuses the scan with id `BAD`; `hold` keeps the
    first call waiting until the test sets it."""

    card: dict = {}
    model_id, model_version, warmed = "fake", "0", True

    def __init__(self, hold: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def warm_up(self) -> None:
        pass

    def _found(self, scan: Scan) -> Detections:
        if scan.id.startswith(BAD):
            raise ScanError(f"{scan.id}: unreadable")
        score = float(np.clip(scan.channels[0].mean(), 0, 1))  # ties the result to the scan's pixels
        return Detections(
            scan_id=scan.id,
            detections=[Detection(box=(1, 1, 5, 5), category="tobacco", score=score)],
            timings_ms={"preprocess": 1.0, "model": 2.0, "postprocess": 0.5},
            model_id=self.model_id,
            model_version=self.model_version,
        )

    def _held(self) -> None:
        self.entered.set()
        assert self.release.wait(timeout=30), "the test never released the engine"

    def detect(self, scan: Scan) -> Detections:
        self.sizes.append(1)
        self._held()
        return self._found(scan)

    def detect_batch(self, scans) -> list[Detections]:
        self.sizes.append(len(scans))
        self._held()
        return [self._found(s) for s in scans]


class ShuffledEngine(BatchEngine):
    """A broken `detect_batch` that answers in the wrong order."""

    def detect_batch(self, scans) -> list[Detections]:
        return super().detect_batch(scans)[::-1]


class SingleEngine(BatchEngine):
    """An engine without `detect_batch`."""

    detect_batch = None  # type: ignore[assignment]


def scan(i: int, name: str = "s") -> Scan:
    return Scan(id=f"{name}{i}", channels=np.full((1, 8, 16), i / 10, np.float32), kind=ScanKind.SINGLE)


def detect_all(batcher: MicroBatcher, scans: list[Scan]) -> list[Detections | BaseException]:
    """`batcher.detect` of each scan on its own thread, all at once; each result or exception."""

    def one(s: Scan) -> Detections | BaseException:
        try:
            return batcher.detect(s)
        except Exception as e:  # noqa: BLE001 -- returned for the test to look at
            return e

    with ThreadPoolExecutor(max_workers=len(scans)) as pool:
        return list(pool.map(one, scans))


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 30  # a guard against hanging, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def test_concurrent_scans_run_as_one_batch_and_each_caller_gets_its_own() -> None:
    engine = BatchEngine()
    # A window far longer than the test: the batch leaves when it is full, never on the clock.
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=4)
    try:
        scans = [scan(i) for i in range(4)]
        found = detect_all(batcher, scans)
    finally:
        batcher.close()
    assert engine.sizes == [4]
    assert [f.scan_id for f in found] == [s.id for s in scans]
    assert [f.detections[0].score for f in found] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_a_bad_scan_fails_only_its_own_caller() -> None:
    engine = BatchEngine()
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=4)
    try:
        found = detect_all(batcher, [scan(0), scan(1, BAD), scan(2), scan(3)])
    finally:
        batcher.close()
    assert isinstance(found[1], ScanError) and "bad1" in str(found[1])
    assert [f.scan_id for f in (found[0], found[2], found[3])] == ["s0", "s2", "s3"]
    assert engine.sizes == [4, 1, 1, 1, 1]  # the failed batch, then each of its scans alone


def test_results_out_of_order_never_reach_the_wrong_caller() -> None:
    engine = ShuffledEngine()
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=3)
    try:
        found = detect_all(batcher, [scan(i) for i in range(3)])
    finally:
        batcher.close()
    assert [f.scan_id for f in found] == ["s0", "s1", "s2"]
    assert engine.sizes == [3, 1, 1, 1]  # the batch was not trusted: each scan again, alone


def test_after_a_failure_outside_the_engine_the_batcher_still_serves() -> None:
    seen: list[int] = []

    def observe(n: int) -> None:
        seen.append(n)
        if len(seen) == 1:
            raise RuntimeError("metrics down")

    batcher = MicroBatcher(BatchEngine(), window_ms=60_000, max_batch=2, on_batch=observe)
    try:
        first = detect_all(batcher, [scan(0), scan(1)])
        second = detect_all(batcher, [scan(2), scan(3)])
    finally:
        batcher.close()
    assert all(isinstance(f, RuntimeError) and "metrics down" in str(f) for f in first)  # answered, not hung
    assert [f.scan_id for f in second] == ["s2", "s3"] and seen == [2, 2]


def test_scans_that_queue_behind_a_running_batch_go_together() -> None:
    engine = BatchEngine(hold=True)
    batcher = MicroBatcher(engine, window_ms=1, max_batch=8)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            first = pool.submit(batcher.detect, scan(0))
            assert engine.entered.wait(timeout=30)  # the first scan alone, held in the engine
            rest = [pool.submit(batcher.detect, scan(i)) for i in (1, 2, 3)]
            wait_until(lambda: batcher.waiting == 3, "three scans queued")
            engine.release.set()
            assert [f.result(timeout=30).scan_id for f in (first, *rest)] == ["s0", "s1", "s2", "s3"]
    finally:
        batcher.close()
    assert engine.sizes == [1, 3]


def test_an_engine_without_detect_batch_is_not_batched() -> None:
    engine = SingleEngine()
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=3)
    assert not batcher.enabled  # a minute-long window, and yet nobody waits
    found = detect_all(batcher, [scan(1), scan(2, BAD), scan(3)])
    batcher.close()
    assert engine.sizes == [1, 1, 1]
    assert found[0].scan_id == "s1" and isinstance(found[1], ScanError) and found[2].scan_id == "s3"


def test_an_engine_whose_graph_takes_one_scan_per_call_is_not_batched() -> None:
    engine = BatchEngine()
    engine.batched = False  # e.g. a graph exported with a fixed batch of 1: detect_batch would only loop
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=4)
    assert not batcher.enabled
    found = detect_all(batcher, [scan(i) for i in range(3)])
    batcher.close()
    assert engine.sizes == [1, 1, 1] and [f.scan_id for f in found] == ["s0", "s1", "s2"]


@pytest.mark.parametrize(("window_ms", "max_batch"), [(0, 8), (60_000, 1)])
def test_batching_off_runs_each_scan_on_its_callers_thread(window_ms: float, max_batch: int) -> None:
    engine = BatchEngine()
    batcher = MicroBatcher(engine, window_ms=window_ms, max_batch=max_batch)
    assert not batcher.enabled
    found = detect_all(batcher, [scan(i) for i in range(4)])
    assert engine.sizes == [1, 1, 1, 1] and [f.scan_id for f in found] == ["s0", "s1", "s2", "s3"]
    batcher.close()


def test_close_runs_what_is_queued_and_later_calls_still_answer() -> None:
    engine = BatchEngine(hold=True)
    batcher = MicroBatcher(engine, window_ms=60_000, max_batch=2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        running = [pool.submit(batcher.detect, scan(i)) for i in (0, 1)]
        assert engine.entered.wait(timeout=30)
        queued = pool.submit(batcher.detect, scan(2))
        wait_until(lambda: batcher.waiting == 1, "a scan queued")
        closing = pool.submit(batcher.close)
        engine.release.set()
        closing.result(timeout=30)
        # The queued scan did not wait out its minute-long window: close sends it at once.
        assert [f.result(timeout=30).scan_id for f in (*running, queued)] == ["s0", "s1", "s2"]
    assert batcher.detect(scan(5)).scan_id == "s5"  # after close: unbatched
    assert engine.sizes == [2, 1, 1]


def test_the_batcher_stands_in_for_the_engine() -> None:
    engine = BatchEngine()
    batcher = MicroBatcher(engine, window_ms=5, max_batch=4)
    assert (batcher.card, batcher.model_id, batcher.model_version, batcher.warmed) == ({}, "fake", "0", True)
    batcher.close()
    with pytest.raises(ConfigError, match="max_batch"):
        MicroBatcher(engine, window_ms=5, max_batch=0)


def post(url: str, scan_files, name: str) -> httpx.Response:
    files = {
        "high": (f"{name}_high.png", scan_files.high.read_bytes()),
        "low": (f"{name}_low.png", scan_files.low.read_bytes()),
    }
    return httpx.post(
        f"{url}/v1/inspections", files=files, data={"manifest": scan_files.manifest.read_text()}, timeout=60
    )


def test_concurrent_http_inspections_are_batched_and_answered_each_with_its_own(
    tmp_path, live_server, scan_files
) -> None:
    engine = BatchEngine(hold=True)
    settings = Settings(data_dir=tmp_path, auth=False, max_in_flight=8, workers=4, batch_window_ms=1, max_batch=4)
    app = create_app(settings, engine=engine)
    names = ["first", "second", BAD + "third", "fourth"]
    with live_server(app) as url, ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(post, url, scan_files[0], names[0])
        assert engine.entered.wait(timeout=30)  # held in the engine, alone
        rest = [pool.submit(post, url, scan_files[i], names[i]) for i in (1, 2, 3)]
        wait_until(lambda: app.state.batcher.waiting == 3, "three inspections queued for the engine")
        engine.release.set()
        answers = [f.result(timeout=60) for f in (first, *rest)]
        metrics = httpx.get(f"{url}/metrics").text
    assert engine.sizes[:2] == [1, 3]  # then the failed batch's scans one by one
    assert [a.status_code for a in answers] == [201, 201, 422, 201]
    assert [answers[i].json()["scan_id"] for i in (0, 1, 3)] == [names[i] for i in (0, 1, 3)]
    assert "unreadable" in answers[2].json()["detail"]
    assert "xray_engine_batch_size_count 2.0" in metrics and "xray_engine_batch_size_sum 4.0" in metrics
