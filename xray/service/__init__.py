"""The inspection service: HTTP API, operator console, folder intake and audit store (used by `serve.py`)."""

from xray.service.app import create_app
from xray.service.settings import Settings

__all__ = ["Settings", "create_app"]
