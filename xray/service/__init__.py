"""The inspection service: HTTP API, operator console, folder intake and audit store (used by `serve.py`)."""

from xray.service.app import Settings, create_app

__all__ = ["Settings", "create_app"]
