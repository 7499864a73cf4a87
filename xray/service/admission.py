"""Admission: at most `limit` inspections in flight; the next one is refused at once with 503 and
Retry-After — the service never builds an unbounded queue."""

from __future__ import annotations

import asyncio
import functools
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
            raise HTTPException(status_code=503, headers={"Retry-After": self._retry_after},
                                detail=f"busy: {self.limit} inspections in flight; retry shortly")
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
