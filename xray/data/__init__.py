"""Datasets in the xray format (datasets/FORMAT.md) and their augmentation.

`xray.data.format` (the layout reader) is torch-free; the torch parts load on first use,
so that `from xray.data.format import ...` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Augment": "xray.data.augment",
    "extract_patch": "xray.data.augment",
    "project": "xray.data.augment",
    "XrayDataset": "xray.data.dataset",
    "collate": "xray.data.dataset",
    "read_scan": "xray.data.dataset",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xray.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
