"""The inspection service: a FastAPI app around one shared `Engine` and the audit `Store`.

The lifespan loads the model once, warms it, opens the store, loads the API keys
and starts the folder watcher when one is configured. Inspections run in a thread
pool of `workers` threads, off the event loop; at most `max_in_flight` are admitted
at a time (running or waiting for a worker) and the next one gets 503 with
Retry-After at once — the service never builds an unbounded queue. Each inspection's
record (and its images) is committed before the response is sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import cv2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from xray.engine import Engine
from xray.errors import ManifestError, ScanReadError, XrayError
from xray.manifest import MAX_MANIFEST_BYTES, Manifest
from xray.overlay import draw_overlay
from xray.scan import Scan
from xray.service.auth import (
    KeyRing,
    check_auth_setting,
    key_hash,
    new_api_key,
    require_client,
)
from xray.service.metrics import Metrics, MetricsMiddleware
from xray.service.schemas import (
    ErrorBody,
    Health,
    Inspection,
    InspectionPage,
    Readiness,
    ReviewIn,
    inspection_of,
    summary_of,
)
from xray.service.store import INSPECTION_ID_RE, InspectionRow, Store
from xray.sources.files import ScanFile, decode_scan
from xray.verdict import Channel, Verdict

log = logging.getLogger("xray.service")

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
MAX_UPLOAD_BYTES = 256 << 20
T = TypeVar("T")


class InspectionEngine(Protocol):
    """What the service needs of `xray.engine.Engine` (tests may wrap one)."""

    model_id: str
    model_version: str
    warmed: bool

    def warm_up(self) -> None: ...
    def inspect(self, scan: Scan, manifest: Manifest) -> Verdict: ...


@dataclass
class Settings:
    """How the service runs (the flags of `serve.py`).

    Attributes:
        model_dir: Exported model folder (default: the bundled models/default).
        data_dir: Images, overlays and, by default, the SQLite database.
        db_url: SQLAlchemy URL of the audit database (default SQLite in `data_dir`).
        host: The address served on; without auth it must be loopback.
        auth: Require an API key in `X-API-Key`.
        api_keys: Keys to accept besides those already in the database (stored hashed).
        watch_dir: A scanner drop folder to inspect from (see `xray.service.intake`).
        watch_settle_s, watch_pairing_timeout_s, watch_poll_s: FolderSource timing; the
            pairing timeout is also how long a scan waits for its manifest.
        max_in_flight: Inspections admitted at once; the next gets 503.
        workers: Threads running inspections (the rest of the admitted ones wait).
        threads: onnxruntime threads per inference (default: all cores).
        tile: Let the engine tile scans much larger than the model input.
        max_upload_bytes: Largest request body of an upload.
        retry_after_s: Retry-After of a 503.
    """

    model_dir: Path | None = None
    data_dir: Path = Path("data")
    db_url: str | None = None
    host: str = "127.0.0.1"
    auth: bool = True
    api_keys: tuple[str, ...] = ()
    watch_dir: Path | None = None
    watch_settle_s: float = 1.0
    watch_pairing_timeout_s: float = 30.0
    watch_poll_s: float = 0.5
    max_in_flight: int = 8
    workers: int = 2
    threads: int | None = None
    tile: bool = False
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    retry_after_s: int = 1


class AdmissionGate:
    """At most `limit` inspections admitted; beyond that, refuse at once (no queue)."""

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


# -- dependencies ------------------------------------------------------------------------


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_engine(request: Request) -> InspectionEngine:
    return request.app.state.engine


Client = Annotated[str, Depends(require_client)]
StoreDep = Annotated[Store, Depends(get_store)]


def found(store: Store, inspection_id: str) -> InspectionRow:
    row = store.get(inspection_id) if INSPECTION_ID_RE.match(inspection_id) else None
    if row is None:
        raise HTTPException(status_code=404, detail=f"no inspection {inspection_id!r}")
    return row


# -- uploads -----------------------------------------------------------------------------


class UploadTooLarge(Exception):
    pass


def _limited(receive: Receive, max_bytes: int) -> Receive:
    """A receive channel that stops a body larger than `max_bytes` while it streams in."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise UploadTooLarge()
        return message

    return receive_limited


@dataclass
class Upload:
    high: ScanFile
    low: ScanFile | None
    manifest: Manifest
    scan_id: str | None


def _part_name(part: UploadFile, fallback: str) -> Path:
    # Only the base name: it labels the scan and names it in error messages, never a path to write to.
    name = Path(part.filename or "").name.strip()
    return Path(name or fallback)


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The parts of an inspection request, checked; HTTPException (4xx) naming what is wrong."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(status_code=413, detail=f"upload is {int(declared)} bytes, the limit is {max_bytes}")
    limited = Request(request.scope, _limited(request.receive, max_bytes))
    try:
        # max_part_size bounds text fields (the manifest); files stream to temporary files.
        form = await limited.form(max_files=4, max_fields=8, max_part_size=4 * MAX_MANIFEST_BYTES)
    except UploadTooLarge:
        raise HTTPException(status_code=413, detail=f"upload exceeds the limit of {max_bytes} bytes") from None
    except HTTPException:
        raise
    except Exception as e:  # the multipart parser's own errors on a malformed body
        raise HTTPException(status_code=400, detail=f"malformed multipart body: {e}") from e
    try:
        files: dict[str, ScanFile] = {}
        for name in ("scan", "high", "low"):
            part = form.get(name)
            if part is None:
                continue
            if not isinstance(part, UploadFile):
                raise HTTPException(status_code=422, detail=f"part {name!r} must be a file, not a text field")
            files[name] = ScanFile(_part_name(part, name), await part.read())
        if "scan" in files and ("high" in files or "low" in files):
            raise HTTPException(status_code=422, detail="send either 'scan' or 'high' (+ 'low'), not both")
        if "low" in files and "high" not in files:
            raise HTTPException(status_code=422, detail="a 'low' energy file needs its 'high' energy file")
        if not files:
            raise HTTPException(status_code=422, detail="missing part: a 'scan' file (or 'high' and 'low' files)")
        raw = form.get("manifest")
        if raw is None:
            raise HTTPException(status_code=422, detail="missing part: 'manifest' (JSON, as a file or a text field)")
        data = await raw.read(MAX_MANIFEST_BYTES + 1) if isinstance(raw, UploadFile) else raw.encode()
        if len(data) > MAX_MANIFEST_BYTES:
            raise HTTPException(status_code=413, detail=f"manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes")
        try:
            manifest = Manifest.from_json(data)
        except ManifestError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        scan_id = form.get("scan_id")
        if scan_id is not None and (not isinstance(scan_id, str) or not 0 < len(scan_id) <= 200):
            raise HTTPException(status_code=422, detail="'scan_id' must be a text field of 1 to 200 characters")
        return Upload(files.get("scan") or files["high"], files.get("low"), manifest, scan_id)
    finally:
        await form.close()


def inspect_upload(engine: InspectionEngine, store: Store, upload: Upload, client: str,
                   present: float) -> InspectionRow:
    """Decode, inspect and record (blocking; runs on an inspection thread)."""
    t0 = time.perf_counter()
    scan = decode_scan(upload.high, upload.low, scan_id=upload.scan_id)
    decode_ms = (time.perf_counter() - t0) * 1e3
    verdict = engine.inspect(scan, upload.manifest)
    verdict = verdict.model_copy(update={"timings_ms": {"decode": round(decode_ms, 3), **verdict.timings_ms}})
    files = [upload.high] + ([upload.low] if upload.low else [])
    return store.record(client=client, verdict=verdict, files=files, manifest=upload.manifest, present=present)


def render_overlay(store: Store, row: InspectionRow) -> Path:
    """The overlay PNG of an inspection, drawn from the stored scan once and then cached on disk."""
    path = store.overlay_path(row.id)
    if path.is_file():
        return path
    if not row.image_paths:
        raise HTTPException(status_code=404, detail=f"inspection {row.id} has no stored scan image")
    try:
        files = [ScanFile.load(store.image_path(p)) for p in row.image_paths]
        scan = decode_scan(files[0], files[1] if len(files) > 1 else None, scan_id=row.scan_id)
    except ScanReadError as e:
        log.error("stored scan of inspection %s unreadable: %s", row.id, e)
        raise HTTPException(status_code=404, detail=f"stored scan image of inspection {row.id} is unreadable") from e
    picture = draw_overlay(scan, Verdict.model_validate(row.verdict), present=row.present)
    ok, png = cv2.imencode(".png", picture)
    if not ok:
        raise RuntimeError("PNG encoder failed")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(png.tobytes())
    os.replace(tmp, path)
    return path


# -- routes ------------------------------------------------------------------------------

router = APIRouter()
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {
                "scan": {"type": "string", "format": "binary",
                         "description": "one scan file: PNG/TIFF/JPEG (single or dual energy) or DICOS"},
                "high": {"type": "string", "format": "binary", "description": "high-energy image (instead of scan)"},
                "low": {"type": "string", "format": "binary", "description": "low-energy image (with high)"},
                "manifest": {"type": "string", "description": "manifest JSON, as a file or a text field"},
                "scan_id": {"type": "string", "description": "scan id (default: the file name)"},
            },
            "required": ["manifest"],
        }}},
    }
}
_ERROR_TEXT = {400: "malformed request body", 401: "missing or wrong API key", 404: "no such inspection",
               413: "upload or manifest too large", 422: "invalid scan image, manifest, field or query parameter",
               503: "too many inspections in flight; see Retry-After"}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all carry a `detail`)."""
    return {c: {"model": ErrorBody, "description": _ERROR_TEXT[c]} for c in codes}



@router.post("/v1/inspections", status_code=201, response_model=Inspection, tags=["inspections"],
             openapi_extra=_UPLOAD_BODY, responses=_errors(400, 401, 413, 422, 503))
async def create_inspection(request: Request, response: Response, client: Client) -> Inspection:
    """Inspect a scan against its manifest: multipart `scan` (or `high` + `low`) and `manifest`."""
    t0 = time.perf_counter()
    app = request.app
    settings: Settings = app.state.settings
    gate: AdmissionGate = app.state.gate
    async with gate.slot():  # before reading the body: a busy service refuses at once
        upload = await read_upload(request, settings.max_upload_bytes)
        try:
            row = await gate.run(inspect_upload, app.state.engine, app.state.store, upload, client, app.state.present)
        except ScanReadError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
    inspection = inspection_of(row)
    app.state.metrics.observe_verdict(row.channel, row.timings_ms, "http", time.perf_counter() - t0)
    response.headers["Location"] = inspection.links.self
    return inspection


@router.get("/v1/inspections", response_model=InspectionPage, tags=["inspections"], responses=_errors(401, 422))
def list_inspections(
    store: StoreDep,
    _client: Client,
    channel: Annotated[Channel | None, Query(description="only this channel")] = None,
    since: Annotated[datetime | None, Query(description="only inspections created at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=INSPECTION_ID_RE.pattern, description="next_cursor of a page")] = None,
) -> InspectionPage:
    """Recorded inspections, newest first, a page at a time."""
    page = store.page(channel=channel, since=since, limit=limit, cursor=cursor)
    return InspectionPage(items=[summary_of(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/v1/inspections/{inspection_id}", response_model=Inspection, tags=["inspections"],
            responses=_errors(401, 404))
def get_inspection(inspection_id: str, store: StoreDep, _client: Client) -> Inspection:
    """One inspection: its verdict, declared-vs-found table and reviews."""
    return inspection_of(found(store, inspection_id))


@router.get("/v1/inspections/{inspection_id}/overlay.png", response_class=FileResponse, tags=["inspections"],
            responses={200: {"content": {"image/png": {}}, "description": "the scan with its evidence"},
                       **_errors(401, 404)})
def get_overlay(inspection_id: str, store: StoreDep, _client: Client) -> FileResponse:
    """The scan with the verdict's evidence drawn over it."""
    path = render_overlay(store, found(store, inspection_id))
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.post("/v1/inspections/{inspection_id}/review", response_model=Inspection, tags=["inspections"],
             responses=_errors(401, 404, 422))
def review_inspection(inspection_id: str, body: ReviewIn, store: StoreDep, client: Client) -> Inspection:
    """Record an officer's decision: confirm the channel or override it (labelled feedback for retraining)."""
    row = found(store, inspection_id)
    channel = body.channel if body.decision == "override" else Channel(row.channel)
    if body.decision == "confirm" and body.channel is not None and body.channel != channel:
        raise HTTPException(status_code=422, detail=f"confirm keeps the channel {channel.value}; "
                                                    f"use decision 'override' to change it to {body.channel.value}")
    reviewed = store.review(row.id, decision=body.decision, channel=channel, note=body.note,  # type: ignore[arg-type]
                            reviewer=body.reviewer, client=client)
    return inspection_of(reviewed or found(store, inspection_id))


@router.get("/healthz", response_model=Health, tags=["operations"])
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, tags=["operations"], responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """Ready when the model is loaded and warmed and the database answers."""
    state = request.app.state
    engine = getattr(state, "engine", None)
    store: Store | None = getattr(state, "store", None)
    database = store is not None and await run_in_threadpool(store.ping)
    body = Readiness(status="not ready", model_loaded=engine is not None,
                     model_warmed=bool(engine is not None and engine.warmed), database=database,
                     model_id=getattr(engine, "model_id", None), model_version=getattr(engine, "model_version", None))
    if body.model_warmed and body.database:
        body.status = "ready"
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)


@router.get("/metrics", tags=["operations"], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# -- the app -----------------------------------------------------------------------------


def _load_keys(store: Store, settings: Settings) -> tuple[KeyRing, str | None]:
    """The accepted keys; a new key (returned, to be shown once) when there is none at all."""
    for key in settings.api_keys:
        store.add_key_hash(key_hash(key), label="configured")
    new_key = None
    if settings.auth and not store.key_hashes():
        new_key = new_api_key()
        store.add_key_hash(key_hash(new_key), label="generated on first start")
    return KeyRing(enabled=settings.auth, hashes=store.key_hashes()), new_key


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    state = app.state
    state.store = store = Store(settings.data_dir, settings.db_url)
    state.keys, state.new_api_key = await run_in_threadpool(_load_keys, store, settings)
    if state.new_api_key:
        # Printed once: only its hash is kept.
        print(f"\n  New API key (shown only now; only its hash is stored):\n\n      {state.new_api_key}\n", flush=True)
    if state.injected_engine is not None:
        engine = state.injected_engine
    else:
        engine = await run_in_threadpool(Engine, settings.model_dir, threads=settings.threads, tile=settings.tile)
    await run_in_threadpool(engine.warm_up)
    state.engine = engine
    verifier = getattr(engine, "verifier", None)
    state.present = float(getattr(verifier, "present", 0.5))
    state.gate = AdmissionGate(settings.max_in_flight, settings.workers, state.metrics, settings.retry_after_s)
    intake = None
    if settings.watch_dir is not None:
        from xray.service.intake import FolderIntake

        intake = FolderIntake(settings.watch_dir, engine=engine, store=store, metrics=state.metrics,
                              present=state.present, settle_s=settings.watch_settle_s,
                              pairing_timeout_s=settings.watch_pairing_timeout_s, poll_s=settings.watch_poll_s)
        intake.start()
    state.intake = intake
    log.info("ready: model %s %s, data in %s", engine.model_id, engine.model_version, settings.data_dir)
    try:
        yield
    finally:
        if intake is not None:
            await run_in_threadpool(intake.stop)
        await run_in_threadpool(state.gate.close)
        store.close()


def create_app(settings: Settings, *, engine: InspectionEngine | None = None) -> FastAPI:
    """The service as an ASGI app.

    Args:
        settings: How to run.
        engine: An already loaded engine to use instead of loading `settings.model_dir`.

    Raises:
        ConfigError: auth switched off on an address that is not loopback.
    """
    check_auth_setting(settings.auth, settings.host)
    app = FastAPI(title="xray inspection service", version="1", lifespan=lifespan,
                  description="Cargo X-ray scans + manifests in, verdicts with evidence out; "
                              "every inspection and review recorded.")
    app.state.settings = settings
    app.state.injected_engine = engine
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    @app.exception_handler(XrayError)
    async def _bad_input(_request: Request, exc: XrayError) -> JSONResponse:
        # Anything xray raises on bad input that a route did not map itself: still the client's fault.
        return JSONResponse({"detail": str(exc)}, status_code=422)

    app.include_router(router)
    app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    return app
