"""Detector families, their registry, and the preprocessing shared with inference.

`xray.model.preprocess` needs numpy and OpenCV only, and the ONNX inference engine imports
it without torch; so this package does not import the families itself. The names below
load on first use from `xray.model.factory`, which imports every family module (they
register themselves with `xray.model.registry`, which imports no model file).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_model": "xray.model.factory",
    "list_models": "xray.model.factory",
    "build_model": "xray.model.factory",
    "model_from_checkpoint": "xray.model.factory",
    "load_checkpoint": "xray.model.factory",
    "register_model": "xray.model.registry",
    "load_config": "xray.config",
    "GoodsDetector": "xray.model.detector",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xray.model' has no attribute {name!r}")
