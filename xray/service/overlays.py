"""The evidence pictures of recorded inspections: drawn from the stored scan once, then cached on disk."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
from fastapi import HTTPException

from xray.atomic import write_atomic
from xray.errors import ScanReadError
from xray.overlay import draw_overlay
from xray.service.store import InspectionRow, Store
from xray.sources.files import ScanFile, decode_cost, decode_scan
from xray.verdict import Verdict

log = logging.getLogger("xray.service")


def overlay_cost(store: Store, row: InspectionRow) -> int:
    """Memory drawing the overlay of `row` takes (its stored scan's decode cost; 0 when not stored)."""
    try:
        return sum(decode_cost(ScanFile.load(store.image_path(p))) for p in row.image_paths)
    except ScanReadError:
        return 0  # overlay_png answers 404 for it


def overlay_png(store: Store, row: InspectionRow) -> Path:
    """The overlay PNG of an inspection (HTTPException 404 when its scan is not stored or unreadable)."""
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
    ok, png = cv2.imencode(".png", draw_overlay(scan, Verdict.model_validate(row.verdict)))
    if not ok:
        raise RuntimeError("PNG encoder failed")
    return write_atomic(path, png.tobytes(), mode=0o600)
