"""Admission: at most `limit` inspections in flight; the next one is refused at once with 503 and
Retry-After — the service never builds an unbounded queue."""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import HTTPException

from xray.service.metrics import Metrics

T = TypeVar("T")


class AdmissionGate:
    """At most `limit` inspections admitted (running or waiting for one of `workers` threads);
    beyond that, refuse at once."""

    def __init__(self, limit: int, workers: int, metrics: Metrics, retry_after_s: int):
        self.limit = limit
        self._sem = asyncio.Semaphore(limit)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspect")
        self._metrics = metrics
        self._retry_after = str(retry_after_s)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        # locked() and acquire() run without an await between them on the one event loop,
        # so the check cannot be overtaken: a full gate refuses, it never makes anyone wait.
        if self._sem.locked():
            self._metrics.rejected.labels(reason="overloaded").inc()
            raise HTTPException(
                status_code=503,
                headers={"Retry-After": self._retry_after},
                detail=f"busy: {self.limit} inspections in flight; retry shortly",
            )
        async with self._sem:
            self._metrics.in_flight.inc()
            try:
                yield
            finally:
                self._metrics.in_flight.dec()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
        """Run blocking work on the inspection threads."""
        return asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class MemoryBudget:
    """Memory that decodes may take: each request reserves what its headers say it needs, within its own
    budget and the process-wide limit; what does not fit is refused (413 alone too large, 503 busy)."""

    def __init__(self, per_request: int, limit: int, metrics: Metrics, retry_after_s: int):
        self.per_request, self.limit = per_request, limit
        self._reserved = 0
        self._lock = threading.Lock()
        self._metrics = metrics
        self._retry_after = str(retry_after_s)

    @property
    def reserved(self) -> int:
        return self._reserved

    @asynccontextmanager
    async def reserve(self, cost: int) -> AsyncIterator[None]:
        if cost > min(self.per_request, self.limit):
            self._metrics.rejected.labels(reason="memory_budget").inc()
            raise HTTPException(
                status_code=413,
                detail=f"the scan needs about {cost >> 20} MiB to decode; "
                f"the limit of one request is {self.per_request >> 20} MiB",
            )
        with self._lock:
            fits = self._reserved + cost <= self.limit
            if fits:
                self._reserved += cost
        if not fits:
            self._metrics.rejected.labels(reason="memory").inc()
            raise HTTPException(
                status_code=503,
                headers={"Retry-After": self._retry_after},
                detail="busy: the memory for decoding scans is taken; retry shortly",
            )
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= cost


def check_disk_space(path: Any, min_free: int, metrics: Metrics) -> None:
    """Refuse new work with 507 while the data folder's disk has less than `min_free` bytes free."""
    free = shutil.disk_usage(path).free
    if free < min_free:
        metrics.rejected.labels(reason="disk_full").inc()
        raise HTTPException(
            status_code=507,
            detail=f"the data disk has {free >> 20} MiB free, below the "
            f"{min_free >> 20} MiB floor; no new inspections until freed",
        )
