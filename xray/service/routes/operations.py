"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from xray.service.auth import require_client
from xray.service.dependencies import InspectorDep, MetricsDep, StoreDep
from xray.service.schemas import ErrorBody, Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(inspector: InspectorDep, store: StoreDep) -> JSONResponse:
    """Ready when the model is loaded and warmed and the database answers."""
    engine = inspector.engine
    database = await run_in_threadpool(store.ping)
    warmed = bool(getattr(engine, "warmed", False))
    body = Readiness(
        status="ready" if warmed and database else "not ready",
        model_loaded=True,
        model_warmed=warmed,
        database=database,
        model_id=getattr(engine, "model_id", None),
        model_version=getattr(engine, "model_version", None),
        execution_provider=(getattr(engine, "providers", None) or [None])[0],
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)


async def metrics_reader(request: Request) -> None:
    """`/metrics` counts verdicts per channel: it takes the API key too (unless `metrics_auth` is off)."""
    if request.app.state.settings.metrics_auth:
        await require_client(request)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_reader)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "missing or wrong API key"},
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics (send the API key in `X-API-Key`)."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
