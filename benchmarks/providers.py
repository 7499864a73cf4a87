"""The engine on the GPU execution providers (CUDA, TensorRT), each only where onnxruntime offers
it and it starts; otherwise its row says "skipped: no GPU" and why.

Per provider: the engine's stage latencies and concurrent streams (as on the CPU), and the model
stage alone at several batch sizes (session runs of a batch of letterboxed inputs), where the
exported graph takes a batch (a graph fixed at batch 1 records that instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import per_second, summarize
from xray.config import ExecutionConfig
from xray.errors import ConfigError
from xray.runtime import PROVIDER_NAMES

GPU_PROVIDERS = ("cuda", "tensorrt")
BATCHES = (1, 8, 32)


def unavailable(provider: str, available: list[str]) -> str | None:
    """Why `provider` cannot run here, or None when onnxruntime offers it."""
    name = PROVIDER_NAMES[provider]
    if name in available:
        return None
    return f"no GPU: this onnxruntime offers no {name} (available: {', '.join(available)})"


def model_batches(engine: Any, batches: tuple[int, ...], n: int, warmup: int = 3) -> dict[str, Any]:
    """The model stage alone at each batch size: p50 of one session run and scans/s (batch / time)."""
    inp = engine.session.get_inputs()[0]
    if isinstance(inp.shape[0], int):
        return {"skipped": f"the exported graph takes batch {inp.shape[0]} only (export with a dynamic batch)"}
    size = tuple(engine.spec.size)
    channels = int(inp.shape[1]) if isinstance(inp.shape[1], int) else engine.spec.channels
    rows = []
    for b in batches:
        x = np.random.default_rng(0).random((b, channels, *size), dtype=np.float32)
        for _ in range(warmup):
            engine.session.run(None, {inp.name: x})
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            engine.session.run(None, {inp.name: x})
            times.append((time.perf_counter() - t0) * 1e3)
        st = summarize(times)
        rows.append({"batch": b, "input": [b, channels, *size], "run_ms": st,
                     "scans_per_second": per_second(b, (st["p50"] or 0) / 1e3)})
    return {"rows": rows}


def run(run_provider: Callable[[ExecutionConfig], dict[str, Any]], *, cache: Path, quick: bool,
        available: list[str] | None = None) -> dict[str, Any]:
    """A row per GPU provider: `run_provider(execution)`'s figures plus the batch sizes, or why not.

    TensorRT keeps its built engines in `cache`/tensorrt, so that only the first run builds them."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    out: dict[str, Any] = {}
    for provider in GPU_PROVIDERS:
        reason = unavailable(provider, available)
        if reason is not None:
            out[provider] = {"skipped": reason}
            continue
        execution = ExecutionConfig(provider=provider, trt_cache=cache / "tensorrt" if provider == "tensorrt" else None)
        try:
            out[provider] = run_provider(execution)
        except ConfigError as e:  # offered, but its libraries (or the GPU) are missing
            out[provider] = {"skipped": f"no GPU: {e}"}
    return out


def batch_rows(engine: Any, *, quick: bool) -> dict[str, Any]:
    """`model_batches` at the benchmark's counts."""
    return model_batches(engine, BATCHES[:2] if quick else BATCHES, 5 if quick else 30)


def torch_cuda(model_dir: Path, *, batches: tuple[int, ...] = BATCHES, n: int = 30, warmup: int = 5) -> dict[str, Any]:
    """The model stage in eager torch on CUDA (the network, decoding and NMS), FP32 and FP16 autocast,
    at each batch size: a GPU figure that needs no onnxruntime-gpu.

    The model is the card's architecture with its training checkpoint's weights when that is on this
    machine, else random ones (then fewer boxes pass the score threshold, so NMS costs less than on
    a trained model)."""
    import json

    import torch

    from benchmarks.eager import find_checkpoint
    from xray.model.factory import build_model, model_from_checkpoint

    if not torch.cuda.is_available():
        return {"skipped": "no GPU: torch sees no CUDA device"}
    card = json.loads((model_dir / "model.json").read_text())
    ckpt = find_checkpoint(card, model_dir)
    if ckpt is not None:
        model, _ = model_from_checkpoint(ckpt)
    else:
        model = build_model(card["training"]["config"], num_classes=len(card["classes"]))
    model = model.eval().cuda()
    channels, size = int(card["input"].get("channels", 3)), tuple(card["input"]["size"])
    rows = []
    for b in batches:
        x = torch.rand((b, channels, *size), device="cuda")
        for amp in (False, True):
            times = []
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                for i in range(warmup + n):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    model(x)
                    torch.cuda.synchronize()
                    if i >= warmup:
                        times.append((time.perf_counter() - t0) * 1e3)
            st = summarize(times)
            rows.append({"batch": b, "fp16": amp, "run_ms": st, "scans_per_second": per_second(b, (st["p50"] or 0) / 1e3)})
    return {"device": torch.cuda.get_device_name(0), "weights": str(ckpt) if ckpt else "random", "rows": rows}
