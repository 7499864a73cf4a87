"""Exception types of xray.

Every error that bad input can cause is one of these, so callers (the CLI, the
HTTP API) can turn it into a clear message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class XrayError(Exception):
    """Base class of all errors raised by xray on bad input or configuration."""


class ScanError(XrayError):
    """Scan data that breaks the `Scan` contract (shape, dtype, values)."""


class ScanReadError(XrayError):
    """A scan file that cannot be read: names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ManifestError(XrayError):
    """A manifest that is malformed (not JSON, missing fields, bad values)."""


class DatasetError(XrayError):
    """A dataset folder that does not follow the xray dataset format."""


class ConfigError(XrayError):
    """An invalid configuration value (CLI flag, YAML config, simulator parameter)."""
