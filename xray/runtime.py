"""onnxruntime sessions: one home for session options and execution-provider choice."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xray.config import ExecutionConfig
from xray.errors import ConfigError

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# `ExecutionConfig.provider` -> onnxruntime's name of that provider.
PROVIDER_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
# What `auto` picks, in order of preference (TensorRT only by name: see ExecutionConfig).
AUTO_PROVIDERS = (CUDA, CPU)

ProviderEntry = str | tuple[str, dict[str, Any]]


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """Providers to use: the requested ones that exist, else the best available, CPU last."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ConfigError(f"execution providers {missing} are not available (available: {available})")
        return list(requested)
    chosen = [p for p in AUTO_PROVIDERS if p in available]
    return chosen or list(available)


def provider_entries(execution: ExecutionConfig, available: list[str]) -> list[ProviderEntry]:
    """onnxruntime's provider list for `execution`, with each provider's options.

    Raises:
        ConfigError: `cuda` or `tensorrt` asked for, and this onnxruntime does not offer it.
    """
    cuda = (CUDA, {"device_id": execution.device_id})
    if execution.provider == "cpu":
        return [CPU]
    if execution.provider == "auto":
        return [cuda, CPU] if CUDA in available else [CPU]
    name = PROVIDER_NAMES[execution.provider]
    if name not in available:
        raise ConfigError(
            f"execution provider {execution.provider!r} ({name}) is not available in this onnxruntime "
            f"(available: {', '.join(available)}); install onnxruntime-gpu on a machine with an NVIDIA GPU, "
            "or use --provider auto|cpu"
        )
    if execution.provider == "cuda":
        return [cuda, CPU]
    trt: dict[str, Any] = {"device_id": execution.device_id, "trt_fp16_enable": execution.fp16}
    if execution.trt_cache is not None:
        try:
            execution.trt_cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"TensorRT engine cache {execution.trt_cache}: {e}") from e
        trt |= {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(execution.trt_cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(execution.trt_cache),
        }
    # Nodes TensorRT cannot take run on CUDA, then the CPU.
    return [(TENSORRT, trt), *([cuda] if CUDA in available else []), CPU]


def session_options(threads: int | None = None) -> Any:
    """Options shared by every session: `threads` intra-op threads (default: all cores), one
    inter-op thread (the graph is one chain), all graph optimisations, and intra-op threads
    that sleep when idle instead of spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    # A spinning pool keeps a core busy after each run, just when the next scan's decoding and
    # preprocessing need it: measured on 2 cores, a 40-ft pair's decode 47-49 -> 28 ms and the
    # engine's total 87-92 -> 71-75 ms, the model stage itself unchanged.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def active_provider(session: Any) -> str:
    """The provider that runs the session's graph first (the ones after it take what it cannot)."""
    return str(session.get_providers()[0])


def create_session(
    path: str | Path,
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    execution: ExecutionConfig | None = None,
) -> Any:
    """An onnxruntime session for the model at `path`.

    Args:
        threads: intra-op threads (default: all cores).
        providers: onnxruntime provider names to force (export's parity checks force the CPU);
            when given, `execution` is ignored.
        execution: Provider choice and its options (default: `ExecutionConfig()`, i.e. auto).

    Raises:
        ConfigError: a requested provider is not available, or onnxruntime could not start it
            (it falls back to the CPU on its own, which an explicit choice must not hide).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is not None:
        return ort.InferenceSession(
            str(path), session_options(threads), providers=choose_providers(available, providers)
        )
    execution = execution or ExecutionConfig()
    entries = provider_entries(execution, available)
    if execution.provider != "cpu" and CUDA in available and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA and cuDNN from the nvidia-* wheels (torch's) only when preloaded.
        try:
            ort.preload_dlls()
        except OSError:
            pass  # the check below names the provider that then could not start
    session = ort.InferenceSession(str(path), session_options(threads), providers=entries)
    wanted = PROVIDER_NAMES.get(execution.provider)
    if wanted is not None and wanted not in session.get_providers():
        raise ConfigError(
            f"execution provider {execution.provider!r} ({wanted}) is offered by onnxruntime but could not "
            f"start (its CUDA/cuDNN/TensorRT libraries?); the session fell back to {session.get_providers()}"
        )
    return session
