"""The files one multipart inspection runs through, from the HTTP route to the JSON answer, measured.

A profiler on every thread (the inspection threads included) records which project files run
code while a second inspection is served by the real app and the bundled model (the first one
warms caches up). The set is pinned here and listed in the README's "Layout": a change that
sends the path through another module fails this test until the list and the README say so.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi.testclient import TestClient

from xray.service import Settings, create_app
from xray.service.demo import write_sample

PACKAGE = Path(__file__).resolve().parents[1] / "xray"

# Plain data types: they hold values and check their own invariants; they decide nothing about a scan.
DATA_TYPES = {
    "scan.py", "manifest.py", "goods.py", "detection.py", "verdict.py", "config.py",
    "sources/base.py", "service/schemas.py",
}
# Middleware that wraps every route alike (crash guard, security headers, request metrics).
EVERY_ROUTE = {"service/guarded.py", "service/metrics.py"}
# The inspection's own path, in the order a reader follows it.
INSPECTION_PATH = [
    "service/routes/inspections.py",  # the route: body, admission, inspect, record, render
    "service/dependencies.py",  # the app's resources handed to the route
    "service/auth.py",  # the caller's API key
    "service/admission.py",  # disk floor, decode memory, a slot
    "service/upload.py",  # the multipart body, bounded
    "sources/files.py",  # PNG/TIFF/JPEG -> Scan
    "verify.py",  # Inspector: engine + manifest rules -> Verdict
    "engine.py",  # Scan -> Detections
    "model/preprocess.py",  # the preprocessing training used
    "domain.py",  # the out-of-domain guard
    "hold.py",  # is the hold empty? from attenuation, not the model
    "service/store.py",  # the audit record, committed before the answer
]


def traced_inspection(tmp_path: Path) -> set[str]:
    """Project files (relative to xray/) that ran code during one inspection after a warm-up."""
    ran: set[str] = set()
    on = threading.Event()

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and on.is_set():
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(PACKAGE):
                ran.add(path.relative_to(PACKAGE).as_posix())

    _, (high, low), manifest = write_sample(1, "clean", "20ft", tmp_path, "portal-dual-16bit")
    files = {"high": (high.name, high.read_bytes()), "low": (low.name, low.read_bytes())}
    # Set before the app starts, so its inspection threads inherit the profiler.
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        with TestClient(create_app(Settings(data_dir=tmp_path / "service", auth=False))) as client:
            assert client.post("/v1/inspections", files=files, data={"manifest": manifest.read_text()}).status_code == 201
            on.set()
            answer = client.post("/v1/inspections", files=files, data={"manifest": manifest.read_text()})
            on.clear()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    assert answer.json()["channel"] == "green"
    return ran


def test_an_inspection_runs_through_the_listed_files_only(tmp_path) -> None:
    ran = traced_inspection(tmp_path)
    path = ran - DATA_TYPES - EVERY_ROUTE
    assert path == set(INSPECTION_PATH), f"new on the path: {sorted(path - set(INSPECTION_PATH))}; " \
                                         f"no longer on it: {sorted(set(INSPECTION_PATH) - path)}"
    assert EVERY_ROUTE <= ran  # the middleware did wrap the request (the profiler saw the whole of it)


def test_the_readme_lists_the_path() -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    listed = readme.split("One inspection's path", 1)[1].split("```", 2)[1]
    assert [line.split()[0] for line in listed.strip().splitlines()] == [f"xray/{p}" for p in INSPECTION_PATH]
