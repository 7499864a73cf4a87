"""Detector families, their registry, and the preprocessing shared with inference.

`xray.model.preprocess` needs numpy and OpenCV only. The torch parts are imported on
first use of the names below, so that the ONNX inference engine can import the
preprocessing without importing torch.
"""

from __future__ import annotations

from typing import Any

_TORCH_API = {
    "create_model": "xray.model.registry",
    "list_models": "xray.model.registry",
    "register_model": "xray.model.registry",
    "load_config": "xray.model.registry",
    "build_model": "xray.model.registry",
    "model_from_checkpoint": "xray.model.registry",
    "GoodsDetector": "xray.model.detector",
}

__all__ = list(_TORCH_API)


def __getattr__(name: str) -> Any:
    if name in _TORCH_API:
        import importlib

        return getattr(importlib.import_module(_TORCH_API[name]), name)
    raise AttributeError(f"module 'xray.model' has no attribute {name!r}")
