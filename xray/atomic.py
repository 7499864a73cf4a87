"""Atomic file writes: a reader, or a process restarted after a crash, never sees half a file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path` (same file system, so `os.replace` is atomic;
    hidden, so folder watchers and scan sources skip it)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_atomic(
    path: str | Path, data: bytes | str | Callable[[Path], object], *, fsync: bool = False, mode: int | None = None
) -> Path:
    """Write `data` to `path` through a temporary file and `os.replace`.

    Args:
        path: The file to (re)write.
        data: Bytes, text (UTF-8), or a function that writes the temporary path it is given
            (e.g. `lambda p: torch.save(state, p)`).
        fsync: Flush the file to disk before the rename (durability across power loss).
        mode: File permissions to set before the rename (e.g. 0o600).
    """
    out = Path(path)
    tmp = temp_path(out)
    try:
        if callable(data):
            data(tmp)
        else:
            payload = data.encode() if isinstance(data, str) else data
            with open(tmp, "wb") as f:
                f.write(payload)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        if fsync and callable(data):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
