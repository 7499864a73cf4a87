"""The app's shared resources as FastAPI dependencies (`Annotated` aliases for the routes).

The lifespan puts them on `app.state`; tests swap any of them with `app.dependency_overrides`
(e.g. `app.dependency_overrides[get_inspector] = lambda: fake`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from xray.service.admission import AdmissionGate, MemoryBudget
from xray.service.auth import require_client
from xray.service.metrics import Metrics
from xray.service.settings import Settings
from xray.service.store import Store
from xray.verify import Inspector


def get_inspector(request: Request) -> Inspector:
    return request.app.state.inspector


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_gate(request: Request) -> AdmissionGate:
    return request.app.state.gate


def get_memory(request: Request) -> MemoryBudget:
    return request.app.state.memory


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


InspectorDep = Annotated[Inspector, Depends(get_inspector)]
StoreDep = Annotated[Store, Depends(get_store)]
GateDep = Annotated[AdmissionGate, Depends(get_gate)]
MemoryDep = Annotated[MemoryBudget, Depends(get_memory)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Client = Annotated[str, Depends(require_client)]
