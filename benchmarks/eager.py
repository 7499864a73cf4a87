"""Eager PyTorch timing of the very model an ONNX export came from (its training checkpoint)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.stats import summarize

ROOT = Path(__file__).resolve().parent.parent


def find_checkpoint(card: dict, model_dir: Path) -> Path | None:
    """The training checkpoint a model card names, if it is on this machine (it is not shipped with the model)."""
    named = (card.get("training") or {}).get("checkpoint")
    if not named:
        return None
    p = Path(named)
    for candidate in (p, ROOT / p, model_dir / p) if not p.is_absolute() else (p,):
        if candidate.is_file():
            return candidate
    return None


def load_eager(checkpoint: str | Path):
    """The detector of a training checkpoint, in eval mode on the CPU, using all cores."""
    import torch

    from xray.model import model_from_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    model, _ = model_from_checkpoint(checkpoint)
    return model


def time_eager(model, x: np.ndarray, *, n: int, warmup: int = 2) -> dict:
    """Latency of `model(x)` (the whole detector: network, decoding, NMS) in ms."""
    import torch

    t = torch.from_numpy(x)
    times = []
    with torch.inference_mode():
        for i in range(warmup + n):
            t0 = time.perf_counter()
            model(t)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return summarize(times)
