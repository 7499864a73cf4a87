"""The training loop: warm-up + cosine LR, AMP on CUDA, gradient clipping, NaN guard,
checkpoints (last.pt, best.pt) with everything needed to rebuild and export the model,
resume, seeds, metrics.csv and plots.

Run folder written by `fit`:
    last.pt, best.pt      one dict: model, config, classes, input, metrics, optimizer, epoch, ...
    metrics.csv           one row per epoch: lr, losses, validation mAP
    config.yaml           the effective config (YAML + command-line overrides)
    loss_curves.png, pr_curves.png, confusion_matrix.png, val_predictions.png
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from xray.data.augment import Augment
from xray.data.dataset import XrayDataset, collate
from xray.errors import ConfigError
from xray.goods import default_goods_table
from xray.model.preprocess import InputSpec
from xray.model.registry import build_model, load_config
from xray.train.evaluate import evaluate, public_metrics

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 4,
    "workers": 2,
    "lr": 2.0e-3,  # AdamW; from-scratch detectors on small data train more reliably than with SGD
    "weight_decay": 0.05,
    "warmup_iters": 300,
    "min_lr_ratio": 0.05,  # cosine ends at lr * this
    "grad_clip": 10.0,
    "image_labels": "boxes",  # boxes | manifest | none: source of the image-level head's labels
    "eval_every": 1,
    "seed": 0,
    "max_bad_steps": 20,  # consecutive non-finite losses before giving up
}
CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_inflated(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load weights into a model whose input has more channels than the weights' model had.

    A weight that differs only in its input-channel dimension (the stem convolution) is
    copied into the first channels and the new channels start at zero, so the model
    starts out computing exactly what the old one did and learns to use the new input.

    Returns:
        Names of the inflated tensors.

    Raises:
        ConfigError: any other mismatch of names or shapes.
    """
    own = model.state_dict()
    if set(own) != set(state):
        raise ConfigError(f"--init: the checkpoint's layers differ: {sorted(set(own) ^ set(state))[:5]}")
    inflated, merged = [], {}
    for name, w in state.items():
        target = own[name]
        if w.shape == target.shape:
            merged[name] = w
        elif w.dim() == 4 and w.shape[0] == target.shape[0] and w.shape[2:] == target.shape[2:] and w.shape[1] < target.shape[1]:
            new = torch.zeros_like(target)
            new[:, : w.shape[1]] = w
            merged[name] = new
            inflated.append(name)
        else:
            raise ConfigError(f"--init: {name} has shape {tuple(w.shape)}, the model needs {tuple(target.shape)}")
    model.load_state_dict(merged)
    return inflated


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def make_optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (decaying them only hurts)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg["lr"])


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration LR factor: linear warm-up, then cosine decay to `min_lr_ratio`."""
    warmup_iters = min(warmup_iters, max(1, total_iters // 5))

    def factor(it: int) -> float:
        if it < warmup_iters:
            return 0.001 + (1 - 0.001) * it / warmup_iters
        t = min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 10.0,
    max_bad_steps: int = 20,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over the loader. Returns mean losses (`loss` and each component).

    A step whose loss or gradient is not finite is skipped (NaN guard); after
    `max_bad_steps` such steps in a row training stops with FloatingPointError.
    """
    model.train()
    sums: dict[str, float] = {}
    steps = bad_in_row = skipped = 0
    amp = scaler is not None
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False, dynamic_ncols=True)
    for images, targets, image_labels in bar:
        images = images.to(device, non_blocking=True)
        targets = [{k: v.to(device) for k, v in t.items() if k in ("boxes", "labels")} for t in targets]
        image_labels = image_labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            losses = model(images, targets, image_labels)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            bad_in_row += 1
            skipped += 1
            if bad_in_row >= max_bad_steps:
                raise FloatingPointError(f"epoch {epoch}: {bad_in_row} steps in a row with a non-finite loss")
            continue
        if amp:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if amp:
            scaler.step(optimizer)  # the scaler skips steps with inf/NaN gradients itself
            scaler.update()
        elif torch.isfinite(grad_norm):
            optimizer.step()
        else:
            skipped += 1
        scheduler.step()
        bad_in_row = 0
        steps += 1
        values = {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()} | {"lr": f"{scheduler.get_last_lr()[0]:.1e}"})
    means = {k: v / max(1, steps) for k, v in sums.items()}
    means["skipped_steps"] = float(skipped)
    return means


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a broken last.pt behind."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def dataset_info(root: Path) -> dict[str, Any]:
    """What dataset.json says about how a dataset was made (for checkpoints and model cards)."""
    info: dict[str, Any] = {"path": str(root)}
    try:
        meta = json.loads((root / "dataset.json").read_text())
        info.update({k: meta.get(k) for k in ("generator", "params", "splits", "created")})
    except (OSError, json.JSONDecodeError):
        pass
    return info


def _versions() -> dict[str, str]:
    import torchvision

    import xray

    return {"xray": xray.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__}


def _score(metrics: dict[str, Any] | None) -> tuple[float, float]:
    """Ranking of checkpoints: mAP@0.5, then mAP@0.5:0.95."""
    if not metrics:
        return (-1.0, -1.0)
    return (metrics.get("mAP50") if metrics.get("mAP50") is not None else -1.0,
            metrics.get("mAP") if metrics.get("mAP") is not None else -1.0)


def fit(
    *,
    data: str | Path,
    config: str | Path | dict[str, Any],
    out: str | Path,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = False,
    init: str | Path | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Train a detector on a dataset in the xray format; returns a summary of the run.

    Arguments left None take the config's `train` section (then `TRAIN_DEFAULTS`).
    `init` starts from another run's weights (same model and classes) with a fresh
    optimizer and schedule: a fine-tuning stage.
    """
    cfg = load_config(config) if not isinstance(config, dict) else {**config}
    unknown = set(cfg.get("train", {})) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown train options: {sorted(unknown)}; known: {sorted(TRAIN_DEFAULTS)}")
    tcfg = {**TRAIN_DEFAULTS, **cfg.get("train", {})}
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("workers", workers), ("seed", seed)):
        if value is not None:
            tcfg[key] = value
    cfg["train"] = tcfg
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    seed_everything(tcfg["seed"])

    spec = InputSpec.from_dict(cfg.get("input", {}))
    classes = list(cfg.get("classes") or default_goods_table().keys)
    data = Path(data)
    train_ds = XrayDataset(data, "train", spec=spec, classes=classes, augment=Augment(cfg.get("augment")),
                           image_labels=tcfg["image_labels"], seed=tcfg["seed"])
    has_val = (data / "annotations" / "val.json").is_file()
    val_ds = XrayDataset(data, "val", spec=spec, classes=classes, image_labels="none") if has_val else None
    generator = torch.Generator().manual_seed(tcfg["seed"])
    loader = DataLoader(train_ds, batch_size=tcfg["batch_size"], shuffle=True, num_workers=tcfg["workers"],
                        collate_fn=collate, drop_last=len(train_ds) > tcfg["batch_size"], generator=generator,
                        pin_memory=dev.type == "cuda")

    model = build_model(cfg, num_classes=len(classes)).to(dev)
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, total_iters=tcfg["epochs"] * len(loader),
                               warmup_iters=tcfg["warmup_iters"], min_lr_ratio=tcfg["min_lr_ratio"])
    scaler = torch.amp.GradScaler("cuda") if dev.type == "cuda" else None
    start_epoch, best, best_metrics = 0, (-1.0, -1.0), None

    last_path, best_path, csv_path = out / "last.pt", out / "best.pt", out / "metrics.csv"
    if resume:
        if not last_path.is_file():
            raise ConfigError(f"--resume: {last_path} does not exist")
        ckpt = torch.load(last_path, map_location=dev, weights_only=False)
        if ckpt["classes"] != classes or ckpt["config"]["model"] != cfg["model"]:
            raise ConfigError(f"--resume: {last_path} was trained with another model config or class list")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch = ckpt["epoch"] + 1
        if ckpt["config"].get("init"):
            cfg["init"] = ckpt["config"]["init"]  # a resumed fine-tuning run keeps its provenance
        best, best_metrics = tuple(ckpt.get("best", best)), ckpt.get("best_metrics")
        torch.set_rng_state(ckpt["rng"]["torch"])
        generator.set_state(ckpt["rng"]["loader"])
    else:
        if init is not None:
            if not Path(init).is_file():
                raise ConfigError(f"--init: {init} does not exist")
            ckpt = torch.load(init, map_location=dev, weights_only=False)
            if ckpt.get("classes") != classes or ckpt.get("config", {}).get("model") != cfg["model"]:
                raise ConfigError(f"--init: {init} was trained with another model config or class list")
            load_inflated(model, ckpt["model"])
            cfg["init"] = {"from": str(init), "epoch": ckpt.get("epoch"), "metrics": ckpt.get("metrics")}
        if csv_path.exists():
            csv_path.unlink()  # a fresh run does not append to an old run's metrics
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    fields = None
    for epoch in range(start_epoch, tcfg["epochs"]):
        t0 = time.time()
        train_ds.set_epoch(epoch)
        losses = train_one_epoch(model, loader, optimizer, scheduler, device=dev, epoch=epoch, scaler=scaler,
                                 grad_clip=tcfg["grad_clip"], max_bad_steps=tcfg["max_bad_steps"], progress=progress)
        metrics = None
        last_epoch = epoch == tcfg["epochs"] - 1
        if val_ds is not None and ((epoch + 1) % tcfg["eval_every"] == 0 or last_epoch):
            metrics = public_metrics(evaluate(model, val_ds, device=dev, batch_size=tcfg["batch_size"])[0])
        row = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "time_s": round(time.time() - t0, 2),
               **{("loss" if k == "loss" else f"loss_{k}"): v for k, v in losses.items() if k != "skipped_steps"},
               "skipped_steps": int(losses.get("skipped_steps", 0)),
               "val_mAP50": "" if metrics is None or metrics["mAP50"] is None else metrics["mAP50"],
               "val_mAP": "" if metrics is None or metrics["mAP"] is None else metrics["mAP"]}
        write_header = not csv_path.exists()
        fields = fields or list(row)
        with open(csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if write_header:
                w.writeheader()
            w.writerow(row)

        improved = metrics is not None and _score(metrics) > best
        if improved:
            best, best_metrics = _score(metrics), metrics
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "config": cfg,
            "classes": classes,
            "input": spec.to_dict(),
            "epoch": epoch,
            "metrics": metrics,
            "metrics_data": {**dataset_info(data), "split": "val"} if metrics is not None else None,
            "best": list(best),
            "best_metrics": best_metrics,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": {"torch": torch.get_rng_state(), "loader": generator.get_state()},
            "versions": _versions(),
        }
        save_checkpoint(last_path, state)
        if improved or (val_ds is None):
            save_checkpoint(best_path, state)
        if progress:
            m = "" if metrics is None else f"  val mAP50 {metrics['mAP50'] or 0:.3f} mAP {metrics['mAP'] or 0:.3f}"
            tqdm.write(f"epoch {epoch}: loss {losses.get('loss', float('nan')):.4f}{m}  ({row['time_s']} s)")

    summary = {"out": str(out), "epochs": tcfg["epochs"], "best": best_metrics, "device": str(dev)}
    if plots and csv_path.exists():
        from xray.train import plots as plotting

        plotting.plot_losses(csv_path, out / "loss_curves.png")
        if val_ds is not None and best_path.is_file():
            best_ckpt = torch.load(best_path, map_location=dev, weights_only=False)
            model.load_state_dict(best_ckpt["model"])
            metrics, predictions = evaluate(model, val_ds, device=dev, batch_size=tcfg["batch_size"])
            plotting.plot_all(out, dataset=val_ds, predictions=predictions, metrics=metrics)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
