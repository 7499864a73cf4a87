"""onnxruntime sessions: one home for session options and execution-provider choice."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xray.errors import ConfigError

# Execution providers in order of preference; the first one available is used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """Providers to use: the requested ones that exist, else the best available, CPU last."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ConfigError(f"execution providers {missing} are not available (available: {available})")
        return list(requested)
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or list(available)


def session_options(threads: int | None = None) -> Any:
    """Options shared by every session: `threads` intra-op threads (default: all cores), one
    inter-op thread (the graph is one chain), all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def create_session(path: str | Path, *, threads: int | None = None, providers: list[str] | None = None) -> Any:
    """An onnxruntime session for the model at `path`.

    Args:
        threads: intra-op threads (default: all cores).
        providers: Execution providers to force (default: the best available).

    Raises:
        ConfigError: a requested provider is not available.
    """
    import onnxruntime as ort

    chosen = choose_providers(ort.get_available_providers(), providers)
    return ort.InferenceSession(str(path), session_options(threads), providers=chosen)
