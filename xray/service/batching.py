"""Dynamic micro-batching: concurrent `detect` calls within a short window run as one `detect_batch`.

The inspection threads decode their own scans, then call `MicroBatcher.detect` and wait. One
batch thread takes the first waiting scan, waits at most `window_ms` from that scan's arrival
for more (up to `max_batch`), and runs them with the engine's `detect_batch` (its `detect` for a
batch of one). Each caller gets its own `Detections` or its own exception: when a batch fails,
its scans are run again one by one, so one bad scan fails only its own request. The queue is
bounded (a caller beyond it waits for room) and `close` runs what is queued before the thread
ends. An engine without `detect_batch` is not batched: each scan runs on its caller's thread,
as without the batcher, since queueing would only serialise it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from xray.detection import Detections
from xray.errors import ConfigError
from xray.scan import Scan
from xray.verify import Detector

log = logging.getLogger("xray.service.batching")


@dataclass
class _Call:
    scan: Scan
    arrived: float = field(default_factory=time.monotonic)
    result: Future[Detections] = field(default_factory=Future)


class MicroBatcher:
    """An engine that batches the concurrent `detect` calls of many threads.

    It offers what the inspector and the service read of an engine (`card`, `model_id`,
    `model_version`, `warmed`, `warm_up`, `detect`), so it can stand wherever the engine does.

    Args:
        engine: The engine (an `xray.engine.Engine`, or anything with `detect`; batched only
            when it has `detect_batch`).
        window_ms: Longest wait, from the first scan's arrival, for more scans to join its batch.
        max_batch: Most scans per batch. `window_ms` 0 or `max_batch` 1: no batching at all,
            each `detect` runs on its caller's thread.
        capacity: Most scans waiting; a caller beyond it waits for room (default 4 x max_batch).
        on_batch: Told the size of each batch run (e.g. a Prometheus histogram's `observe`).

    Raises:
        ConfigError: a negative window, a batch size below 1 or a capacity below `max_batch`.
    """

    def __init__(
        self,
        engine: Detector,
        *,
        window_ms: float,
        max_batch: int,
        capacity: int | None = None,
        on_batch: Callable[[int], Any] | None = None,
    ):
        capacity = 4 * max_batch if capacity is None else capacity
        if window_ms < 0 or max_batch < 1 or capacity < max_batch:
            raise ConfigError(
                f"micro-batching needs window_ms >= 0, max_batch >= 1 and capacity >= max_batch; "
                f"got {window_ms}, {max_batch} and {capacity}"
            )
        self.engine = engine
        self.card = engine.card
        self.model_id = str(getattr(engine, "model_id", ""))
        self.model_version = str(getattr(engine, "model_version", ""))
        self.window_s, self.max_batch, self.capacity = window_ms / 1e3, max_batch, capacity
        self._on_batch = on_batch
        self._detect_batch: Callable[[Sequence[Scan]], list[Detections]] | None = getattr(engine, "detect_batch", None)
        # An engine whose graph takes one scan per call (`batched` False) would only loop over a
        # batch: queueing its scans behind one thread serialises them, so they stay on their callers.
        self.enabled = (
            window_ms > 0 and max_batch > 1 and self._detect_batch is not None and getattr(engine, "batched", True)
        )
        self._waiting: deque[_Call] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.enabled:
            # A daemon: a service that never calls close() must still be able to exit.
            self._thread = threading.Thread(target=self._serve, name="xray-batch", daemon=True)
            self._thread.start()

    @property
    def warmed(self) -> bool:
        return bool(getattr(self.engine, "warmed", False))

    def warm_up(self) -> None:
        warm_up: Callable[[], Any] | None = getattr(self.engine, "warm_up", None)
        if warm_up is not None:
            warm_up()

    @property
    def waiting(self) -> int:
        """Scans queued for the next batch (not the one running)."""
        with self._cond:
            return len(self._waiting)

    def detect(self, scan: Scan) -> Detections:
        """The engine's detections for `scan`, run in a batch with the scans that arrive with it.

        Raises:
            Whatever the engine's `detect` raises for this scan.
        """
        if not self.enabled:
            return self.engine.detect(scan)
        call = _Call(scan)
        with self._cond:
            while len(self._waiting) >= self.capacity and not self._closed:
                self._cond.wait()
            closed = self._closed
            if not closed:
                self._waiting.append(call)
                self._cond.notify_all()
        if closed:  # after close(): still answered, unbatched, on the caller's thread
            return self.engine.detect(scan)
        return call.result.result()

    def close(self) -> None:
        """Run what is queued, then stop the batch thread; later calls run unbatched."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    # -- the batch thread -------------------------------------------------------------

    def _next_batch(self) -> list[_Call] | None:
        """Wait for a batch: the first waiting scan and those that join it within the window
        (none when closed: what is queued goes at once). None when closed and drained."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if not self._waiting:
                return None
            # The window counts from the first scan's arrival: a scan that already waited
            # while the previous batch ran does not wait again.
            deadline = self._waiting[0].arrived + self.window_s
            while len(self._waiting) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            self._cond.notify_all()  # room in the queue for waiting callers
            return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._run(batch)
            except BaseException as e:  # noqa: BLE001 -- the thread must live on for the callers to come
                log.exception("a batch of %d failed outside the engine", len(batch))
                for call in batch:
                    if not call.result.done():
                        call.result.set_exception(e)

    def _run(self, batch: list[_Call]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        if len(batch) > 1 and self._detect_batch is not None:  # never None here: only then is there a thread
            try:
                found = self._detect_batch([c.scan for c in batch])
                # A result given to the wrong caller would be a verdict on the wrong container.
                if len(found) != len(batch) or any(d.scan_id and d.scan_id != c.scan.id for c, d in zip(batch, found)):
                    raise RuntimeError(f"detect_batch's results do not match its {len(batch)} scans")
            except Exception as e:  # noqa: BLE001 -- which scan failed is unknown: each runs alone below
                log.debug("a batch of %d failed (%s); running its scans one by one", len(batch), e)
            else:
                for call, detections in zip(batch, found):
                    call.result.set_result(detections)
                return
        for call in batch:
            try:
                call.result.set_result(self.engine.detect(call.scan))
            except BaseException as e:  # noqa: BLE001 -- the caller's own exception, raised in its thread
                call.result.set_exception(e)
