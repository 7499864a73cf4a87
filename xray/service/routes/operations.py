"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from xray.service.dependencies import InspectorDep, MetricsDep, StoreDep
from xray.service.schemas import Health, Readiness

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
    body = Readiness(status="ready" if warmed and database else "not ready", model_loaded=True, model_warmed=warmed,
                     database=database, model_id=getattr(engine, "model_id", None),
                     model_version=getattr(engine, "model_version", None))
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
