"""The service's guards around untrusted input and unexpected failures.

* `GuardedRoute`: JSON request bodies go through `xray.manifest.parse_json` (size, depth,
  number length, finite numbers, UTF-8, lone surrogates) instead of `json.loads`.
* `validation_error`: a 422 whose `detail` is text naming the fields, never the input (FastAPI's
  default handler echoes it, and crashes on undecodable input).
* `CrashGuard`: an unexpected error is a logged 500 with an error id, never a dropped connection.
* `SecurityHeaders`: CSP, nosniff, frame and referrer policies on every response.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xray.errors import ManifestError
from xray.manifest import parse_json

log = logging.getLogger("xray.service")

MAX_JSON_BODY_BYTES = 64 << 10  # a review is a few hundred bytes
# Ids end up in file names, logs and SQL text columns (PostgreSQL refuses NUL).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Dates only as RFC 3339 / ISO 8601 (a date, or a date and time): a bare number is not read as a timestamp.
_ISO_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?)?$"
)
# What the OpenAPI document says `since` is (the same two forms the parser takes).
SINCE_SCHEMA = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def printable(text: str) -> str:
    """Text safe to put in a response or a log line: undecodable and control characters escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").translate({c: f"\\x{c:02x}" for c in range(32)})


def parse_since(value: str | None) -> datetime | None:
    """A `since` query parameter: ISO 8601 only (UTC when no zone is given).

    Raises:
        HTTPException: 422 naming the accepted form.
    """
    if value is None:
        return None
    m = _ISO_DATE.match(value)
    if m is None:
        raise HTTPException(
            status_code=422,
            detail="'since' must be an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T08:00:00Z",
        )
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = UTC
        if zone and zone not in "Zz":
            sign = -1 if zone[0] == "-" else 1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("zone offset out of range")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),  # a leap second (:60) counts as :59
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        raise HTTPException(status_code=422, detail="'since' is not a valid date or time") from None


class _GuardedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body(), what="request body", max_bytes=MAX_JSON_BODY_BYTES)
            except ManifestError as e:
                raise HTTPException(status_code=422, detail=str(e)) from None
        return self._json


class GuardedRoute(APIRoute):
    """An APIRoute whose JSON bodies are parsed by `parse_json` (FastAPI re-raises our HTTPException)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            return await handler(_GuardedRequest(request.scope, request.receive))

        return guarded


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with a text `detail` (the one error shape, `ErrorBody`), naming fields and rules, never the input."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = []
    for e in errors[:10]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{printable(where)}: {printable(str(e.get('msg', 'invalid')))}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


class CrashGuard:
    """Turns an exception that escapes a route into a 500 with an error id (logged with its traceback).

    Starlette's own handler re-raises after answering, and uvicorn then closes the connection;
    this one answers and keeps the connection usable."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except Exception:
            error_id = secrets.token_hex(6)
            log.exception("error %s in %s %s", error_id, scope.get("method"), printable(scope.get("path", "")))
            if started:
                raise  # half a response is out: closing the connection is all that is left
            response = JSONResponse(
                {"detail": f"internal error {error_id}; it is logged under this id"}, status_code=500
            )
            await response(scope, receive, send)


# The console and the docs load only their own files; Swagger UI sets inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
