"""`/v1/inspections`: inspect a scan against its manifest, list and read the records, review them.

A new inspection's body is read first (with a size limit and read timeouts: a slow client holds
nothing), then the disk floor is checked, the decode memory its headers claim is reserved, and it
takes a slot at the admission gate; it decodes, detects, verifies and records on an inspection
thread. Its record (and images) is committed before the response is sent, and the response is
that record's verdict as built. Overlays are drawn under the same gate and memory budget.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from xray.errors import ScanReadError
from xray.service.admission import check_disk_space
from xray.service.dependencies import Client, GateDep, InspectorDep, MemoryDep, MetricsDep, SettingsDep, StoreDep
from xray.service.guarded import SINCE_SCHEMA, GuardedRoute, parse_since
from xray.service.overlays import overlay_cost, overlay_png
from xray.service.schemas import ErrorBody, Inspection, InspectionPage, ReviewIn, inspection_of, summary_of
from xray.service.store import INSPECTION_ID_RE, InspectionRow, Store
from xray.service.upload import UPLOAD_BODY, Upload, read_upload
from xray.verdict import Channel, Verdict
from xray.verify import Inspector

router = APIRouter(prefix="/v1/inspections", tags=["inspections"], route_class=GuardedRoute)

_ERROR_TEXT = {
    400: "malformed request body",
    401: "missing or wrong API key",
    404: "no such inspection",
    408: "the upload stalled or took too long",
    413: "upload, manifest or decoded scan too large",
    415: "the body is not multipart/form-data",
    422: "invalid scan image, manifest, field or query parameter",
    503: "too many inspections in flight, or their memory taken; see Retry-After",
    507: "the data disk is below its free-space floor",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all carry a `detail`)."""
    return {c: {"model": ErrorBody, "description": _ERROR_TEXT[c]} for c in codes}


def found(store: Store, inspection_id: str) -> InspectionRow:
    row = store.get(inspection_id) if INSPECTION_ID_RE.match(inspection_id) else None
    if row is None:
        raise HTTPException(status_code=404, detail=f"no inspection {inspection_id!r}")
    return row


def inspect_upload(inspector: Inspector, store: Store, upload: Upload, client: str) -> tuple[InspectionRow, Verdict]:
    """Decode, inspect and record (blocking; runs on an inspection thread)."""
    t0 = time.perf_counter()
    scan = upload.decode()
    verdict = inspector.inspect(scan, upload.manifest, decode_ms=(time.perf_counter() - t0) * 1e3)
    row = store.record(
        client=client, verdict=verdict, files=upload.files, manifest=upload.manifest, present=inspector.config.present
    )
    return row, verdict


@router.post(
    "",
    status_code=201,
    response_model=Inspection,
    openapi_extra=UPLOAD_BODY,
    responses=_errors(400, 401, 408, 413, 415, 422, 503, 507),
)
async def create_inspection(
    request: Request,
    response: Response,
    client: Client,
    inspector: InspectorDep,
    store: StoreDep,
    gate: GateDep,
    memory: MemoryDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Inspection:
    """Inspect a scan against its manifest: multipart `scan` (or `high` + `low`) and `manifest`."""
    t0 = time.perf_counter()
    # The body first, bounded in size and time: a slow client holds no slot and no memory budget.
    upload = await read_upload(
        request, settings.max_upload_bytes, timeout_s=settings.body_timeout_s, deadline_s=settings.body_deadline_s
    )
    check_disk_space(store.data_dir, settings.min_free_bytes, metrics)
    try:
        cost = upload.decode_cost()
    except ScanReadError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e
    async with memory.reserve(cost), gate.slot():
        try:
            row, verdict = await gate.run(inspect_upload, inspector, store, upload, client)
        except ScanReadError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
    metrics.observe_verdict(row.channel, verdict.timings_ms, "http", time.perf_counter() - t0)
    inspection = inspection_of(row, verdict)
    response.headers["Location"] = inspection.links.self
    return inspection


@router.get("", response_model=InspectionPage, responses=_errors(401, 422))
def list_inspections(
    store: StoreDep,
    _client: Client,
    channel: Annotated[Channel | None, Query(description="only this channel")] = None,
    since: Annotated[
        str | None,
        Query(
            description="only inspections created at or after (ISO 8601 date or date-time, UTC unless a zone is given)",
            json_schema_extra=SINCE_SCHEMA,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=INSPECTION_ID_RE.pattern, description="next_cursor of a page")] = None,
) -> InspectionPage:
    """Recorded inspections, newest first, a page at a time."""
    page = store.page(channel=channel, since=parse_since(since), limit=limit, cursor=cursor)
    return InspectionPage(items=[summary_of(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/{inspection_id}", response_model=Inspection, responses=_errors(401, 404))
def get_inspection(inspection_id: str, store: StoreDep, _client: Client) -> Inspection:
    """One inspection: its verdict, declared-vs-found table and reviews."""
    return inspection_of(found(store, inspection_id))


@router.get(
    "/{inspection_id}/overlay.png",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "the scan with its evidence"},
        **_errors(401, 404, 413, 503),
    },
)
async def get_overlay(
    inspection_id: str, store: StoreDep, gate: GateDep, memory: MemoryDep, _client: Client
) -> FileResponse:
    """The scan with the verdict's evidence drawn over it."""
    row = await run_in_threadpool(found, store, inspection_id)
    path = store.overlay_path(row.id)
    if not path.is_file():  # drawing decodes the stored scan: the same admission as an inspection
        async with memory.reserve(await run_in_threadpool(overlay_cost, store, row)), gate.slot():
            path = await gate.run(overlay_png, store, row)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.post("/{inspection_id}/review", response_model=Inspection, responses=_errors(400, 401, 404, 422))
def review_inspection(inspection_id: str, body: ReviewIn, store: StoreDep, client: Client) -> Inspection:
    """Record an officer's decision: confirm the channel or override it (labelled feedback for retraining)."""
    row = found(store, inspection_id)
    channel = body.channel if body.decision == "override" and body.channel is not None else Channel(row.channel)
    if body.decision == "confirm" and body.channel is not None and body.channel != channel:
        raise HTTPException(
            status_code=422,
            detail=f"confirm keeps the channel {channel.value}; "
            f"use decision 'override' to change it to {body.channel.value}",
        )
    reviewed = store.review(
        row.id, decision=body.decision, channel=channel, note=body.note, reviewer=body.reviewer, client=client
    )
    return inspection_of(reviewed or found(store, inspection_id))
