"""The inspection service: a FastAPI app around one shared `Inspector` and the audit `Store`.

The lifespan loads the model once, warms it, opens the store, loads the API keys and
starts the folder watcher when one is configured; routes reach these through the
dependencies of `xray.service.dependencies`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from xray.engine import Engine
from xray.errors import XrayError
from xray.service.admission import AdmissionGate, MemoryBudget
from xray.service.auth import bootstrap_keys, check_auth_setting
from xray.service.batching import MicroBatcher
from xray.service.guarded import CrashGuard, SecurityHeaders, printable, validation_error
from xray.service.intake import FolderIntake
from xray.service.metrics import Metrics, MetricsMiddleware
from xray.service.routes import inspections, operations
from xray.service.settings import Settings
from xray.service.store import Store
from xray.verify import Inspector

log = logging.getLogger("xray.service")

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
DOCS_DIR = Path(__file__).resolve().parent / "docs"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    state = app.state
    state.store = store = Store(settings.data_dir, settings.db_url)
    # A generated key goes to <data dir>/api-key (0600), never to stdout or the log.
    state.keys, state.new_api_key = await run_in_threadpool(
        bootstrap_keys, store, auth=settings.auth, api_keys=settings.api_keys
    )
    engine = state.injected_engine
    if engine is None:
        engine = await run_in_threadpool(
            Engine, settings.model_dir, threads=settings.threads, tile=settings.tile, execution=settings.execution
        )
    await run_in_threadpool(engine.warm_up)
    state.engine = engine
    # No batch can hold more scans than there are threads sending them.
    senders = settings.workers + (settings.watch_dir is not None)
    state.batcher = batcher = MicroBatcher(
        engine,
        window_ms=settings.batch_window_ms,
        max_batch=min(settings.max_batch, senders),
        capacity=senders,
        on_batch=state.metrics.batch_size.observe,
    )
    # Only a batcher that batches stands in the inspection's path.
    state.inspector = inspector = Inspector(batcher if batcher.enabled else engine)
    state.gate = AdmissionGate(settings.max_in_flight, settings.workers, state.metrics, settings.retry_after_s)
    state.memory = MemoryBudget(
        settings.request_memory_bytes, settings.memory_limit_bytes, state.metrics, settings.retry_after_s
    )
    intake = None
    if settings.watch_dir is not None:
        intake = FolderIntake(
            settings.watch_dir,
            inspector=inspector,
            store=store,
            metrics=state.metrics,
            settle_s=settings.watch_settle_s,
            pairing_timeout_s=settings.watch_pairing_timeout_s,
            poll_s=settings.watch_poll_s,
        )
        intake.start()
    state.intake = intake
    log.info(
        "ready: model %s %s on %s, data in %s",
        engine.model_id,
        engine.model_version,
        (getattr(engine, "providers", None) or ["?"])[0],
        settings.data_dir,
    )
    try:
        yield
    finally:
        if intake is not None:
            await run_in_threadpool(intake.stop)
        await run_in_threadpool(state.gate.close)
        await run_in_threadpool(batcher.close)
        store.close()


def create_app(settings: Settings, *, engine: Any | None = None) -> FastAPI:
    """The service as an ASGI app.

    Args:
        settings: How to run.
        engine: An already loaded `Engine` (or one that behaves like it) to use instead of
            loading `settings.model_dir`.

    Raises:
        ConfigError: auth switched off on an address that is not loopback.
    """
    check_auth_setting(settings.auth, settings.host)
    app = FastAPI(
        title="xray inspection service",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Cargo X-ray scans + manifests in, verdicts with evidence out; "
        "every inspection and review recorded.",
    )
    app.state.settings = settings
    app.state.injected_engine = engine
    app.state.metrics = Metrics()
    # Outermost last: headers on every answer, metrics count the 500s CrashGuard makes.
    app.add_middleware(CrashGuard)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(XrayError)
    async def _bad_input(_request: Request, exc: XrayError) -> JSONResponse:
        # Anything xray raises on bad input that a route did not map itself: still the client's fault.
        return JSONResponse({"detail": printable(str(exc))}, status_code=422)

    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/docs", include_in_schema=False)
    async def _docs() -> FileResponse:
        return FileResponse(DOCS_DIR / "index.html", media_type="text/html")

    @app.get("/docs/init.js", include_in_schema=False)
    async def _docs_init() -> FileResponse:
        return FileResponse(DOCS_DIR / "init.js", media_type="text/javascript")

    app.include_router(inspections.router)
    app.include_router(operations.router)
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    return app
