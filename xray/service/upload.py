"""The parts of a multipart inspection request: scan file(s), manifest, scan id — checked while they
stream in, every problem a 4xx that names it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from xray.errors import ManifestError
from xray.manifest import MAX_MANIFEST_BYTES, Manifest
from xray.scan import Scan
from xray.service.guarded import has_control
from xray.sources.files import ScanFile, decode_cost, decode_scan

# The request body of the route, for the OpenAPI document (the route reads the form itself, streaming).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "scan": {
                            "type": "string",
                            "format": "binary",
                            "description": "one scan file: PNG/TIFF/JPEG (single or dual energy) or DICOS",
                        },
                        "high": {
                            "type": "string",
                            "format": "binary",
                            "description": "high-energy image (instead of scan)",
                        },
                        "low": {"type": "string", "format": "binary", "description": "low-energy image (with high)"},
                        "manifest": {"type": "string", "description": "manifest JSON, as a file or a text field"},
                        "scan_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "description": "scan id (default: the file name); no control characters",
                        },
                    },
                    # One scan file, or a high-energy file (and its low), and always the manifest.
                    "anyOf": [{"required": ["scan", "manifest"]}, {"required": ["high", "manifest"]}],
                }
            }
        },
    }
}


class UploadTooLarge(Exception):
    pass


class UploadStalled(Exception):
    pass


def _limited(receive: Receive, max_bytes: int, timeout_s: float, deadline_s: float) -> Receive:
    """A receive channel that stops a body larger than `max_bytes`, one whose next chunk takes longer
    than `timeout_s`, and one that is not all in after `deadline_s`, while it streams in."""
    received = 0
    deadline = time.monotonic() + deadline_s

    async def receive_limited() -> Message:
        nonlocal received
        wait = min(timeout_s, deadline - time.monotonic())
        try:
            if wait <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            raise UploadStalled() from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise UploadTooLarge()
        return message

    return receive_limited


@dataclass
class Upload:
    high: ScanFile
    low: ScanFile | None
    manifest: Manifest
    scan_id: str | None

    @property
    def files(self) -> list[ScanFile]:
        return [self.high] + ([self.low] if self.low else [])

    def decode_cost(self) -> int:
        """Memory decoding will take, from the files' headers (nothing decoded).

        Raises:
            ScanReadError: a header that is unreadable or claims an implausible size.
        """
        return sum(decode_cost(f) for f in self.files)

    def decode(self) -> Scan:
        """The scan (blocking).

        Raises:
            ScanReadError: a file is not a readable scan image.
        """
        return decode_scan(self.high, self.low, scan_id=self.scan_id)


def _part_name(part: UploadFile, fallback: str) -> Path:
    # Only the base name: it labels the scan and names it in error messages, never a path to write to.
    name = Path(part.filename or "").name.strip()
    if has_control(name) or len(name) > 255:  # it becomes the scan id, and ids carry no control characters
        name = ""
    return Path(name or fallback)


async def read_upload(
    request: Request, max_bytes: int, *, timeout_s: float = 10.0, deadline_s: float = 120.0
) -> Upload:
    """The parts of an inspection request, checked; HTTPException (4xx) naming what is wrong
    (408 for a body that stalls for `timeout_s` or is not in after `deadline_s`)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(status_code=413, detail=f"upload is {int(declared)} bytes, the limit is {max_bytes}")
    limited = Request(request.scope, _limited(request.receive, max_bytes, timeout_s, deadline_s))
    try:
        # max_part_size bounds text fields (the manifest); files stream to temporary files.
        form = await limited.form(max_files=4, max_fields=8, max_part_size=4 * MAX_MANIFEST_BYTES)
    except UploadTooLarge:
        raise HTTPException(status_code=413, detail=f"upload exceeds the limit of {max_bytes} bytes") from None
    except UploadStalled:
        raise HTTPException(
            status_code=408,
            headers={"Connection": "close"},
            detail=f"upload too slow: no data for {timeout_s:g} s, or not complete within {deadline_s:g} s",
        ) from None
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
        data = (
            await raw.read(MAX_MANIFEST_BYTES + 1)
            if isinstance(raw, UploadFile)
            else raw.encode("utf-8", "surrogatepass")
        )
        if len(data) > MAX_MANIFEST_BYTES:
            raise HTTPException(status_code=413, detail=f"manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes")
        try:
            manifest = Manifest.from_json(data)
        except ManifestError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        scan_id = form.get("scan_id")
        if scan_id is not None and (
            not isinstance(scan_id, str) or not 0 < len(scan_id) <= 200 or has_control(scan_id)
        ):
            raise HTTPException(
                status_code=422,
                detail="'scan_id' must be a text field of 1 to 200 characters without control characters",
            )
        return Upload(files.get("scan") or files["high"], files.get("low"), manifest, scan_id)
    finally:
        await form.close()
