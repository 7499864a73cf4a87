"""The training loop: warm-up + cosine LR, AMP on CUDA, gradient clipping, NaN guard,
checkpoints (last.pt, best.pt) with everything needed to rebuild and export the model,
resume, seeds, metrics.csv and plots; data-parallel over processes under torchrun
(xray.train.distributed: only rank 0 validates and writes).

`fit` is a sequence of plain steps, each its own function: build the datasets and the
loader (`build_datasets`, `build_loader`), the model, optimizer and schedule
(`build_training`), start fresh, from another run (`init_from`) or where it stopped (`resume_run`), then per
epoch `train_one_epoch` and `end_epoch` (`validate`, `append_metrics`, `save_checkpoint`); plots last.

Run folder written by `fit`:
    last.pt, best.pt      one dict: model, optimizer, scheduler, config, epoch, classes, input, metrics, ...
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler
from tqdm import tqdm

from xray.atomic import write_atomic
from xray.config import BOX_FREE_FAMILIES, TrainConfig, XrayConfig, config_from_dict, load_config, validate_section
from xray.data.augment import Augment
from xray.data.dataset import XrayDataset, collate
from xray.errors import ConfigError
from xray.goods import goods_table
from xray.model.factory import bn_held, build_model, load_checkpoint
from xray.provenance import versions
from xray.train import distributed
from xray.train import plots as plotting
from xray.train.evaluate import evaluate, evaluate_scan_level
from xray.train.metrics import dataset_info, public_metrics
from xray.train.sampling import repeat_sampler

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
        elif (
            w.dim() == 4
            and w.shape[0] == target.shape[0]
            and w.shape[2:] == target.shape[2:]
            and w.shape[1] < target.shape[1]
        ):
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


def torch_threads(workers: int, device: torch.device, *, cores: int | None = None) -> int | None:
    """Torch's threads for a run on the CPU: the cores the loader's `workers` leave, at least one. On 2
    cores, two torch threads beside two workers spun waiting on each other while the workers ran; one
    thread trained a stage-1 epoch in 241 s against 280 (session 23). None, torch's own choice, on a GPU
    (the compute is not on these threads) or where OMP_NUM_THREADS says (torchrun sets it)."""
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    if not cores:  # the cores this process may run on, where the OS says (not on macOS)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - workers)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig | dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (decaying them only hurts)."""
    tcfg = validate_section(TrainConfig, cfg, "train")
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tcfg.lr)


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


class BoxLossWatch:
    """Stops a run whose box loss is flat at 1.0 from the start (a dead regression head).

    GIoU loss 1.0 at every foreground point means zero-size predicted boxes, and those get
    no gradient: such a run learns classes but never boxes, however long it trains. The
    first `steps` steps that have foreground points (box loss > 0) are watched; if all stay
    within `tol` of 1.0, `observe` raises. 0 steps: never stop.
    """

    def __init__(self, steps: int, tol: float) -> None:
        self.steps, self.tol = steps, tol
        self.seen = 0
        self.flat = True

    def observe(self, box_loss: float) -> None:
        """One step's box loss; raises ConfigError when the watched steps were all flat."""
        if self.steps == 0 or not self.flat or box_loss <= 0.0:  # 0: no foreground point in the batch
            return
        self.flat = abs(box_loss - 1.0) <= self.tol
        self.seen += 1
        if self.flat and self.seen >= self.steps:
            raise ConfigError(
                f"the box loss stayed at 1.0 (within {self.tol:g}) for the first {self.seen} steps: the "
                "regression head predicts zero-size boxes and gets no gradient (a dead ReLU). Use "
                "model.box_activation: exp (or set train.box_stall_steps: 0 to train on regardless)"
            )


def hold_batchnorm(model: torch.nn.Module) -> int:
    """Put every BatchNorm layer of a training model in eval mode: it normalises with its running
    statistics and does not update them; its scale and shift still learn. Returns how many."""
    held = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            held += 1
    return held


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    grad_clip: float,
    max_bad_steps: int,
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = True,
    box_watch: BoxLossWatch | None = None,
    ranks: distributed.Ranks | None = None,
    freeze_bn: bool = False,
) -> dict[str, float]:
    """One pass over the loader. Returns mean losses (`loss` and each component).

    A step whose loss or gradient is not finite is skipped (NaN guard); after
    `max_bad_steps` such steps in a row training stops with FloatingPointError.
    `box_watch` stops a run whose box loss is stuck at 1.0 (ConfigError).
    Under DDP (`ranks`) the step losses are averaged across processes before any of
    these decisions, so that all processes take the same ones. With `freeze_bn` the
    BatchNorm layers stay in eval mode (`hold_batchnorm`).
    """
    ranks = ranks or distributed.Ranks()
    model.train()
    if freeze_bn:
        hold_batchnorm(model)
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
        # One all-reduce per step: the losses of all processes (a NaN on any one is seen by all).
        step = ranks.mean(torch.stack([t.detach().float() for t in (loss, *losses.values())]))
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(step[0]):
            bad_in_row += 1
            skipped += 1
            if bad_in_row >= max_bad_steps:
                raise FloatingPointError(f"epoch {epoch}: {bad_in_row} steps in a row with a non-finite loss")
            continue
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)  # the scaler skips steps with inf/NaN gradients itself
            scaler.update()
        elif torch.isfinite(grad_norm):
            optimizer.step()
        else:
            skipped += 1
        scheduler.step()
        bad_in_row = 0
        steps += 1
        values = dict(zip(["loss", *losses], step.tolist()))
        if box_watch is not None and "bbox_regression" in values:
            box_watch.observe(values["bbox_regression"])
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()} | {"lr": f"{scheduler.get_last_lr()[0]:.1e}"})
    if not freeze_bn:  # held statistics are the same everywhere already; averaging would only round them
        ranks.average_buffers(model)  # every process ends the epoch with the same model
    means = {k: v / max(1, steps) for k, v in sums.items()}
    means["skipped_steps"] = float(skipped)
    return means


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a broken last.pt behind."""
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _score(metrics: dict[str, Any] | None) -> tuple[float, float]:
    """Ranking of checkpoints: mAP@0.5, then mAP@0.5:0.95 (box-free models: scan-level mAP,
    then balanced accuracy)."""
    if not metrics:
        return (-1.0, -1.0)
    if metrics.get("level") == "scan":
        return (
            float(metrics["scan_mAP"]) if metrics.get("scan_mAP") is not None else -1.0,
            float(metrics["balanced_accuracy"]) if metrics.get("balanced_accuracy") is not None else -1.0,
        )
    return (
        float(metrics["mAP50"]) if metrics.get("mAP50") is not None else -1.0,
        float(metrics["mAP"]) if metrics.get("mAP") is not None else -1.0,
    )


def build_datasets(data: Path, cfg: XrayConfig, classes: list[str]) -> tuple[XrayDataset, XrayDataset | None]:
    """The augmented training split and the validation split (None when the dataset has none)."""
    train_ds = XrayDataset(
        data,
        "train",
        spec=cfg.input,
        classes=classes,
        augment=Augment(cfg.augment),
        image_labels=cfg.train.image_labels,
        seed=cfg.train.seed,
    )
    has_val = (data / "annotations" / "val.json").is_file()
    # A box-free model is validated on the scan-level labels it trains on (declarations, or boxed truth).
    val_labels = cfg.train.image_labels if box_free(cfg) else "none"
    val_ds = XrayDataset(data, "val", spec=cfg.input, classes=classes, image_labels=val_labels) if has_val else None
    return train_ds, val_ds


def box_free(cfg: XrayConfig) -> bool:
    """True for model families without box outputs (scan-level labels and metrics)."""
    return cfg.model.name in BOX_FREE_FAMILIES


def build_loader(
    dataset: XrayDataset, tcfg: TrainConfig, device: torch.device, ranks: distributed.Ranks | None = None
) -> tuple[DataLoader, torch.Generator]:
    """The shuffling training loader and its generator (saved in checkpoints, so resume replays the order).
    Under DDP each process loads its share, shuffled by `DistributedSampler` from the seed and epoch;
    with `train.repeat_threshold`, images holding rare classes are drawn more often (`xray.train.sampling`)."""
    generator = torch.Generator().manual_seed(tcfg.seed)
    sampler: DistributedSampler | WeightedRandomSampler | None
    sampler = distributed.sampler(dataset, ranks or distributed.Ranks(), tcfg.seed)
    if tcfg.repeat_threshold > 0:
        if sampler is not None:
            raise ConfigError("train.repeat_threshold (repeat factor sampling) does not work with --ddp; set it to 0")
        sampler = repeat_sampler(dataset.labels, tcfg.repeat_threshold, generator)
    loader = DataLoader(
        dataset,
        batch_size=tcfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=tcfg.workers,
        collate_fn=collate,
        drop_last=len(sampler if sampler is not None else dataset) > tcfg.batch_size,
        generator=generator,
        pin_memory=device.type == "cuda",
    )
    return loader, generator


@dataclass
class Training:
    """What one run trains and carries from epoch to epoch (all of it goes into the checkpoint)."""

    cfg: XrayConfig
    classes: list[str]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    scaler: torch.amp.GradScaler | None = None
    start_epoch: int = 0
    best: tuple[float, float] = (-1.0, -1.0)
    best_metrics: dict[str, Any] | None = None
    metrics_data: dict[str, Any] = field(default_factory=dict)
    box_watch: BoxLossWatch | None = None

    def checkpoint(self, epoch: int, metrics: dict[str, Any] | None) -> dict[str, Any]:
        """The checkpoint of `epoch`: one dict with everything to resume, rebuild and export."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "config": self.cfg.model_dump(mode="json"),
            "classes": self.classes,
            "input": self.cfg.input.to_dict(),
            "epoch": epoch,
            "metrics": metrics,
            "metrics_data": {**self.metrics_data, "split": "val"} if metrics is not None else None,
            "data": self.metrics_data,  # what it trained on, whether or not this epoch was evaluated
            "best": list(self.best),
            "best_metrics": self.best_metrics,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {"torch": torch.get_rng_state(), "loader": self.generator.get_state()},
            "versions": versions(),
        }


def build_training(
    cfg: XrayConfig, classes: list[str], loader: DataLoader, generator: torch.Generator, device: torch.device
) -> Training:
    """Model, optimizer, warm-up + cosine schedule over the run, and AMP's scaler on CUDA."""
    model = build_model(cfg, num_classes=len(classes)).to(device)
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(
        optimizer,
        total_iters=cfg.train.epochs * len(loader),
        warmup_iters=cfg.train.warmup_iters,
        min_lr_ratio=cfg.train.min_lr_ratio,
    )
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    return Training(
        cfg=cfg,
        classes=classes,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        scaler=scaler,
        box_watch=BoxLossWatch(cfg.train.box_stall_steps, cfg.train.box_stall_tol),
    )


def _same_model(ckpt: dict[str, Any], run: Training) -> bool:
    stored = config_from_dict(ckpt.get("config", {}), "checkpoint config")
    return ckpt.get("classes") == run.classes and stored.model == run.cfg.model


def resume_run(run: Training, path: Path, device: torch.device) -> None:
    """Continue a stopped run from its last.pt: weights, optimizer, schedule, RNG, best so far."""
    if not path.is_file():
        raise ConfigError(f"--resume: {path} does not exist")
    ckpt = load_checkpoint(path, map_location=device)
    if not _same_model(ckpt, run):
        raise ConfigError(f"--resume: {path} was trained with another model config or class list")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.start_epoch = ckpt["epoch"] + 1
    if ckpt["config"].get("init"):
        run.cfg = run.cfg.replace(init=ckpt["config"]["init"])  # a resumed fine-tuning run keeps its provenance
    if bn_held(ckpt):
        run.cfg = run.cfg.replace(train={"freeze_bn": True})  # as the run started (`init_from`)
    run.best, run.best_metrics = tuple(ckpt.get("best", run.best)), ckpt.get("best_metrics")
    torch.set_rng_state(ckpt["rng"]["torch"])
    run.generator.set_state(ckpt["rng"]["loader"])


def init_from(run: Training, path: Path, device: torch.device) -> None:
    """Start from another run's weights (same model and classes; a new input channel is inflated)
    with a fresh optimizer and schedule: a fine-tuning stage. Its provenance goes into `init`."""
    if not path.is_file():
        raise ConfigError(f"--init: {path} does not exist")
    ckpt = load_checkpoint(path, map_location=device)
    if not _same_model(ckpt, run):
        raise ConfigError(f"--init: {path} was trained with another model config or class list")
    load_inflated(run.model, ckpt["model"])
    run.cfg = run.cfg.replace(init={"from": str(path), "epoch": ckpt.get("epoch"), "metrics": ckpt.get("metrics")})
    if bn_held(ckpt) and not run.cfg.train.freeze_bn:
        # Placeholder statistics (BatchNorm folded at export): batch statistics would undo the weights.
        run.cfg = run.cfg.replace(train={"freeze_bn": True})
        print(
            f"--init: {path} has placeholder BatchNorm statistics (folded at export, or held since); "
            "training with train.freeze_bn"
        )


def validate(run: Training, val_ds: XrayDataset | None, epoch: int, device: torch.device) -> dict[str, Any] | None:
    """Validation mAP every `eval_every` epochs and after the last; None when not due."""
    tcfg = run.cfg.train
    due = (epoch + 1) % tcfg.eval_every == 0 or epoch == tcfg.epochs - 1
    if val_ds is None or not due:
        return None
    if box_free(run.cfg):
        return evaluate_scan_level(run.model, val_ds, device=device, batch_size=tcfg.batch_size)
    return public_metrics(evaluate(run.model, val_ds, device=device, batch_size=tcfg.batch_size)[0])


def append_metrics(csv_path: Path, row: dict[str, Any]) -> None:
    """One row of metrics.csv (the header with the first row)."""
    write_header = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
        if write_header:
            w.writeheader()
        w.writerow(row)


def metrics_row(
    epoch: int, lr: float, seconds: float, losses: dict[str, float], metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """metrics.csv's row of one epoch: lr, time, losses, validation mAP (empty when not measured);
    box-free models: validation scan-level mAP and balanced accuracy."""
    if metrics is not None and metrics.get("level") == "scan":
        return {
            "epoch": epoch,
            "lr": lr,
            "time_s": round(seconds, 2),
            **{("loss" if k == "loss" else f"loss_{k}"): v for k, v in losses.items() if k != "skipped_steps"},
            "skipped_steps": int(losses.get("skipped_steps", 0)),
            "val_scan_mAP": "" if metrics["scan_mAP"] is None else metrics["scan_mAP"],
            "val_balanced_accuracy": "" if metrics["balanced_accuracy"] is None else metrics["balanced_accuracy"],
        }
    return {
        "epoch": epoch,
        "lr": lr,
        "time_s": round(seconds, 2),
        **{("loss" if k == "loss" else f"loss_{k}"): v for k, v in losses.items() if k != "skipped_steps"},
        "skipped_steps": int(losses.get("skipped_steps", 0)),
        "val_mAP50": "" if metrics is None or metrics["mAP50"] is None else metrics["mAP50"],
        "val_mAP": "" if metrics is None or metrics["mAP"] is None else metrics["mAP"],
    }


def plot_run(out: Path, run: Training, val_ds: XrayDataset | None, device: torch.device) -> None:
    """Loss curves, and PR curves, confusion matrix and predictions of the best checkpoint."""
    plotting.plot_losses(out / "metrics.csv", out / "loss_curves.png")
    best_path = out / "best.pt"
    if val_ds is not None and best_path.is_file() and not box_free(run.cfg):
        run.model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
        metrics, predictions = evaluate(run.model, val_ds, device=device, batch_size=run.cfg.train.batch_size)
        plotting.plot_all(out, dataset=val_ds, predictions=predictions, metrics=metrics)


def fit(
    *,
    data: str | Path,
    config: str | Path | XrayConfig | dict[str, Any],
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
    threads: int | None = None,
) -> dict[str, Any]:
    """Train a detector on a dataset in the xray format; returns a summary of the run.

    Arguments left None take the config's `train` section. `init` starts from another
    run's weights (same model and classes) with a fresh optimizer and schedule: a
    fine-tuning stage. Started by torchrun, each process trains its share of the data
    (xray.train.distributed) and `batch_size` is per process. `threads` are torch's CPU
    threads (default `torch_threads`: on the CPU, the cores the loader's workers leave).
    """
    cfg = load_config(config) if isinstance(config, (str, Path)) else config_from_dict(config)
    overrides = {"epochs": epochs, "batch_size": batch_size, "workers": workers, "seed": seed}
    cfg = cfg.replace(train={k: v for k, v in overrides.items() if v is not None})
    ranks, dev = distributed.start(resolve_device(device))  # one process outside torchrun
    before = torch.get_num_threads()
    torch.set_num_threads(threads or torch_threads(cfg.train.workers, dev) or before)
    try:
        summary = train_run(
            cfg, Path(data), Path(out), dev, ranks, resume=resume, init=init, progress=progress, plots=plots
        )
    except BaseException:
        distributed.stop(ranks, wait=False)
        raise
    finally:
        torch.set_num_threads(before)  # the caller keeps its own count after the run
    distributed.stop(ranks)
    return summary


def train_run(
    cfg: XrayConfig,
    data: Path,
    out: Path,
    dev: torch.device,
    ranks: distributed.Ranks,
    *,
    resume: bool,
    init: str | Path | None,
    progress: bool,
    plots: bool,
) -> dict[str, Any]:
    """`fit` in one process of a run (the only one outside torchrun); rank 0 writes the run folder."""
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed)
    writes = ranks.main

    classes = list(cfg.classes or goods_table(cfg.goods_table).keys)
    train_ds, val_ds = build_datasets(data, cfg, classes)
    loader, generator = build_loader(train_ds, cfg.train, dev, ranks)
    run = build_training(cfg, classes, loader, generator, dev)
    run.metrics_data = dataset_info(data)
    csv_path = out / "metrics.csv"
    if resume:
        resume_run(run, out / "last.pt", dev)
    else:
        if init is not None:
            init_from(run, Path(init), dev)
        if writes:
            csv_path.unlink(missing_ok=True)  # a fresh run does not append to an old run's metrics
    if writes:
        (out / "config.yaml").write_text(yaml.safe_dump(run.cfg.model_dump(mode="json"), sort_keys=False))
    trainee = distributed.wrap(run.model, ranks, dev)  # after resume/init: DDP starts every rank from rank 0's weights

    tcfg = run.cfg.train
    if run.start_epoch < tcfg.epochs:
        train_ds.keep_tip_patches(progress=progress and writes)  # before the loader forks its workers
    for epoch in range(run.start_epoch, tcfg.epochs):
        t0 = time.time()
        train_ds.set_epoch(epoch)
        if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        losses = train_one_epoch(
            trainee,
            loader,
            run.optimizer,
            run.scheduler,
            device=dev,
            epoch=epoch,
            scaler=run.scaler,
            grad_clip=tcfg.grad_clip,
            max_bad_steps=tcfg.max_bad_steps,
            progress=progress and writes,
            box_watch=run.box_watch,
            ranks=ranks,
            freeze_bn=tcfg.freeze_bn,
        )
        if writes:
            end_epoch(run, out, epoch, losses, val_ds, dev, time.time() - t0, progress=progress)
        ranks.barrier()  # last.pt is on disk before any process goes on (or stops)

    summary = {
        "out": str(out),
        "epochs": tcfg.epochs,
        "best": run.best_metrics,
        "device": str(dev),
        "rank": ranks.rank,
        "world_size": ranks.world_size,
    }
    if writes:
        if plots and csv_path.exists():
            plot_run(out, run, val_ds, dev)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def end_epoch(
    run: Training,
    out: Path,
    epoch: int,
    losses: dict[str, float],
    val_ds: XrayDataset | None,
    dev: torch.device,
    seconds: float,
    *,
    progress: bool,
) -> None:
    """Validate, append to metrics.csv, write last.pt (and best.pt when it improved), report."""
    metrics = validate(run, val_ds, epoch, dev)
    row = metrics_row(epoch, float(run.scheduler.get_last_lr()[0]), seconds, losses, metrics)
    append_metrics(out / "metrics.csv", row)
    improved = metrics is not None and _score(metrics) > run.best
    if improved:
        run.best, run.best_metrics = _score(metrics), metrics
    state = run.checkpoint(epoch, metrics)
    save_checkpoint(out / "last.pt", state)
    if improved or val_ds is None:
        save_checkpoint(out / "best.pt", state)
    if progress:
        m = (
            ""
            if metrics is None
            else (
                f"  val scan mAP {metrics['scan_mAP'] or 0:.3f} balanced acc {metrics['balanced_accuracy'] or 0:.3f}"
                if metrics.get("level") == "scan"
                else f"  val mAP50 {metrics['mAP50'] or 0:.3f} mAP {metrics['mAP'] or 0:.3f}"
            )
        )
        tqdm.write(f"epoch {epoch}: loss {losses.get('loss', float('nan')):.4f}{m}  ({row['time_s']} s)")
