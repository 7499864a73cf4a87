"""`xray serve --ray`: the inspection service as a Ray Serve deployment, for a network of scan centres.

Each replica runs the very app of `xray.service.app.create_app` (routes, auth, admission, audit
store), loaded through its `engine=` hook with an engine whose `detect` joins the replica's
micro-batch (`@serve.batch`): inspections in flight together on a replica share one
`detect_batch` call. Ray Serve's proxy spreads requests over the replicas.

Replicas share the audit database: SQLite in the data folder when they run on one machine,
PostgreSQL (`--db`) when they run on several. The API key is bootstrapped once, here, before
any replica starts, so that replicas starting together do not each make one. `/metrics` is
the answering replica's own (Ray Serve exports the cluster's). The folder intake is not
run under Ray: one watcher per replica would race for the same files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from ray import serve

from xray.engine import Engine
from xray.errors import ConfigError
from xray.scan import Scan
from xray.service.app import create_app
from xray.service.auth import bootstrap_keys, check_auth_setting
from xray.service.settings import Settings
from xray.service.store import Store
from xray.verify import detect_batch

log = logging.getLogger("xray.service")

APP_NAME = "xray"
# A short wait: a lone inspection pays at most this, concurrent ones share a model call.
BATCH_WAIT_S = 0.01
MAX_BATCH = 4
# Ray Serve kills its HTTP proxy after 3 health checks of 10 s go unanswered. On a loaded 2-core machine
# the proxy can still be starting after that (seen in `make test` beside a training run: serve.start
# failed with ActorDiedError), so a local cluster allows a minute.
PROXY_ENV = {"RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60"}


def proxy_environment() -> None:
    """Set `PROXY_ENV` (unless already set) before `ray.init` starts a local cluster, whose
    processes inherit it; a cluster that is already running keeps its own settings."""
    for name, value in PROXY_ENV.items():
        os.environ.setdefault(name, value)


class BatchedEngine:
    """An engine whose `detect` goes through a replica's micro-batch; everything else is the engine's.

    `detect` is called on an inspection thread (the admission gate's pool) and waits for the
    batch handler on the replica's event loop.
    """

    def __init__(
        self, engine: Any, batched: Callable[[Scan], Coroutine[Any, Any, Any]], loop: asyncio.AbstractEventLoop
    ):
        self._engine, self._batched, self._loop = engine, batched, loop

    def detect(self, scan: Scan) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:  # waiting here would hold up the very loop that runs the batch
            raise RuntimeError("BatchedEngine.detect blocks: call it from an inspection thread, not the event loop")
        return asyncio.run_coroutine_threadsafe(self._batched(scan), self._loop).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@serve.deployment(name="inspections")
@serve.ingress()
class InspectionService:
    """One replica: an engine and the service app around it."""

    def __init__(self, settings: Settings, max_batch: int, batch_wait_s: float):
        self.settings = settings
        self.engine = Engine(settings.model_dir, threads=settings.threads, tile=settings.tile)
        self.detect_batched.set_max_batch_size(max_batch)  # type: ignore[attr-defined]
        self.detect_batched.set_batch_wait_timeout_s(batch_wait_s)  # type: ignore[attr-defined]

    async def __serve_build_asgi_app__(self) -> Any:
        # Built on the replica's event loop, which the batch handler runs on.
        engine = BatchedEngine(self.engine, self.detect_batched, asyncio.get_running_loop())
        return create_app(self.settings, engine=engine)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def detect_batched(self, scans: list[Scan]) -> list[Any]:
        return await asyncio.to_thread(detect_batch, self.engine, scans)


def ray_settings(settings: Settings, max_batch: int) -> Settings:
    """The settings a replica runs with: absolute paths (a replica's working folder is Ray's), no
    folder intake, enough inspection threads to fill a batch, one onnxruntime thread unless
    told (replicas share the machine's cores), and batching left to Ray.

    Raises:
        ConfigError: auth off on an address that is not loopback, or the folder intake asked for.
    """
    check_auth_setting(settings.auth, settings.host)
    if settings.watch_dir is not None:
        raise ConfigError("the folder intake (--watch) does not run under Ray: one watcher per replica would race")
    update: dict[str, Any] = {
        "data_dir": settings.data_dir.resolve(),
        "workers": max(settings.workers, max_batch),
        "threads": settings.threads or 1,
        "batch_window_ms": 0.0,  # Ray's @serve.batch does the batching; the app's own batcher stays off
    }
    if settings.model_dir is not None:
        update["model_dir"] = settings.model_dir.resolve()
    return settings.model_copy(update=update)


def deploy(
    settings: Settings,
    *,
    port: int,
    replicas: int = 1,
    max_batch: int = MAX_BATCH,
    batch_wait_s: float = BATCH_WAIT_S,
) -> str | None:
    """Start the service on the Ray cluster `ray.init` connected to, at http://HOST:PORT/.

    Each replica reserves `settings.threads` CPUs (default 1) and runs onnxruntime on as many.

    Returns the API key generated on first start (written to <data dir>/api-key), or None.

    Raises:
        ConfigError: auth off on an address that is not loopback, the folder intake asked
            for, or batch and replica counts below 1.
    """
    if replicas < 1 or max_batch < 1:
        raise ConfigError("replicas and the batch size must be at least 1")
    settings = ray_settings(settings, max_batch)
    store = Store(settings.data_dir, settings.db_url)
    try:
        _, new_key = bootstrap_keys(store, auth=settings.auth, api_keys=settings.api_keys)
    finally:
        store.close()
    # Ray Serve queues past this per replica; the app's own gate answers 503 beyond max_in_flight.
    ongoing = max(settings.max_in_flight, max_batch) + 1
    app = InspectionService.options(  # type: ignore[attr-defined]
        num_replicas=replicas, max_ongoing_requests=ongoing, ray_actor_options={"num_cpus": settings.threads}
    ).bind(settings, max_batch, batch_wait_s)
    serve.start(http_options={"host": settings.host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    return new_key
