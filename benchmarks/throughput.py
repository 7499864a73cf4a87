"""Throughput of the other stages: simulator scans/s, and training images/s (the data pipeline
with augmentation, and forward + backward + optimiser steps of the default config at its input
size on the CPU)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import simulator
from benchmarks.inputs import CanonicalScan
from benchmarks.stats import per_second, summarize

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "models" / "default.yaml"


def loader_images_per_second(cfg: Any, data: Path, split: str, n: int) -> dict[str, Any]:
    """`XrayDataset.__getitem__` with the training augmentation (TIP included), one process."""
    from xray.data.augment import Augment
    from xray.data.dataset import XrayDataset

    ds = XrayDataset(data, split, spec=cfg.input, augment=Augment(cfg.augment), image_labels="boxes")
    n = min(n, len(ds))
    ds[0]  # warm-up (TIP pool, imports)
    t0 = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    wall = time.perf_counter() - t0
    return {"images": n, "seconds": round(wall, 3), "images_per_second_per_worker": per_second(n, wall),
            "workers_in_config": cfg.train.workers}


def train_batch(cfg: Any, scans: dict[str, CanonicalScan], classes: list[str], batch_size: int):
    """A training batch from the canonical scans (real content and their true boxes), repeated."""
    import torch

    from xray.model.preprocess import preprocess
    from xray.sources.files import read_scan

    spec = cfg.input
    items = []
    for s in scans.values():
        x, lb = preprocess(read_scan(s.high, s.low), spec)
        boxes = [b for c, b in s.truth["boxes"] if c in classes]
        labels = [classes.index(c) for c, _ in s.truth["boxes"] if c in classes]
        image_labels = np.zeros(len(classes), np.float32)
        image_labels[labels] = 1.0
        items.append((torch.from_numpy(x), {"boxes": torch.from_numpy(lb.to_input(np.asarray(boxes).reshape(-1, 4))),
                                             "labels": torch.tensor(labels, dtype=torch.int64)},
                      torch.from_numpy(image_labels)))
    picked = [items[i % len(items)] for i in range(batch_size)]
    return torch.stack([p[0] for p in picked]), [p[1] for p in picked], torch.stack([p[2] for p in picked])


def train_steps_per_second(scans: dict[str, CanonicalScan], *, steps: int, config: Path = DEFAULT_CONFIG) -> dict:
    """Forward + backward + AdamW step of the default config's model, batch size from the config."""
    import torch

    from xray.goods import default_goods_table
    from xray.model import build_model, load_config
    from xray.train.loop import make_optimizer

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = load_config(config)
    classes = default_goods_table().keys
    model = build_model(cfg, num_classes=len(classes)).train()
    optimizer = make_optimizer(model, cfg.train)
    batch_size = cfg.train.batch_size
    images, targets, image_labels = train_batch(cfg, scans, classes, batch_size)
    times = []
    for i in range(steps + 1):  # the first step allocates: not timed
        t0 = time.perf_counter()
        losses = model(images, targets, image_labels)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            times.append((time.perf_counter() - t0) * 1e3)
    step = summarize(times)
    return {"config": str(config.relative_to(ROOT)), "input": list(cfg.input.size), "batch_size": batch_size,
            "steps": steps, "step_ms": step, "images_per_second": round(batch_size * 1e3 / step["p50"], 3),
            "device": "cpu", "torch_threads": torch.get_num_threads()}


def run(scans: dict[str, CanonicalScan], data: Path, *, quick: bool, model_dir: Path | None = None,
        cache: Path | None = None) -> dict[str, Any]:
    """The section (archive re-scoring too, given the model and the cache)."""
    from benchmarks import rescore
    from xray.model import load_config

    workers = os.cpu_count() or 1
    out: dict[str, Any] = {"simulator": simulator.run(count=4 if quick else 40, size="40ft", workers=workers),
                           "training_step": train_steps_per_second(scans, steps=1 if quick else 5),
                           "training_loader": loader_images_per_second(load_config(DEFAULT_CONFIG), data, "test",
                                                                       n=8 if quick else 64)}
    if model_dir is not None and cache is not None:
        out["rescore"] = rescore.run(model_dir, data, cache, quick=quick)
    return out
