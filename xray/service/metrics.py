"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can build many).

* ``xray_http_requests_total{route,method,status}`` and ``xray_http_request_seconds{route}``
  from an ASGI middleware; `route` is the route template, never the raw path.
* ``xray_stage_seconds{stage}``: preprocess, model, postprocess, verify, total (the
  engine's timings) and end_to_end (request received to verdict recorded).
* ``xray_inspections_in_flight``, ``xray_inspections_rejected_total{reason}``,
  ``xray_verdicts_total{channel,source}``, ``xray_intake_failures_total{reason}``.
* ``xray_engine_batch_size``: scans per engine call of the micro-batcher (`xray.service.batching`).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; dense where the service should be (tens of ms) and wide enough for a slow disk.
_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
# The *_created series double the output and no dashboard uses them.
disable_created_metrics()
STAGES = ("decode", "preprocess", "model", "postprocess", "verify", "total")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("xray_http_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram(
            "xray_http_request_seconds", "HTTP request latency", ["route"], buckets=_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "xray_stage_seconds", "Inspection latency per stage", ["stage"], buckets=_BUCKETS, registry=r
        )
        self.in_flight = Gauge("xray_inspections_in_flight", "Inspections being processed", registry=r)
        self.rejected = Counter("xray_inspections_rejected", "Inspections refused", ["reason"], registry=r)
        self.verdicts = Counter("xray_verdicts", "Verdicts by channel", ["channel", "source"], registry=r)
        self.intake_failures = Counter("xray_intake_failures", "Folder-intake files rejected", ["reason"], registry=r)
        self.batch_size = Histogram(
            "xray_engine_batch_size", "Scans per micro-batch", buckets=(1, 2, 3, 4, 6, 8, 16, 32), registry=r
        )

    def observe_verdict(
        self, channel: str, timings_ms: dict[str, float], source: str, end_to_end_s: float | None = None
    ) -> None:
        self.verdicts.labels(channel=channel, source=source).inc()
        for stage in STAGES:
            if stage in timings_ms:
                self.stage_seconds.labels(stage=stage).observe(timings_ms[stage] / 1e3)
        if end_to_end_s is not None:
            self.stage_seconds.labels(stage="end_to_end").observe(end_to_end_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and times them by route template (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route: Any = scope.get("route")
            # Static console files match no route; one label for them keeps the label set small.
            name = getattr(route, "path", None) or ("unmatched" if status == 404 else "console")
            self.metrics.requests.labels(route=name, method=scope["method"], status=str(status)).inc()
            self.metrics.request_seconds.labels(route=name).observe(time.perf_counter() - t0)
