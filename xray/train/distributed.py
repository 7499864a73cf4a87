"""Data-parallel training over several processes, one per GPU (or CPU share), as torchrun starts them.

    torchrun --standalone --nproc_per_node 8 -m xray train --data ARCHIVE --out runs/NAME ...
    xray train --ddp 8 ...          # the same, through torch's own launcher

Each process trains on its share of the training split (DistributedSampler) with a DDP-wrapped
model, whose gradients are averaged across processes at every step, so that all processes hold
the same weights. Step losses are averaged across processes too, so that every process takes the
same decisions (skip a non-finite step, stop a dead box head), and BatchNorm statistics are averaged
at the end of every epoch. Only rank 0 validates and writes:
checkpoints, metrics.csv, plots and progress bars. A multi-node run's ranks must share the run
folder (resume reads last.pt on every rank).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from xray.errors import ConfigError

# Variables torchrun sets in every process it starts.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Rank 0 validates while the others wait at the next collective: give it time for a large split.
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: one process (rank 0 of 1) outside torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over all processes (the values themselves in one process)."""
        if not self.distributed:
            return values
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average the BatchNorm statistics over all processes (as timm's `distribute_bn`): DDP
        averages gradients, but each process's running statistics follow its own batches only."""
        if not self.distributed:
            return
        for name, buf in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(self.mean(buf))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched() -> bool:
    """True in a process that torchrun started."""
    return all(v in os.environ for v in LAUNCH_VARS)


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when torchrun started this process (nccl on CUDA, gloo on the CPU);
    returns this process's ranks and its device (`cuda:LOCAL_RANK` on CUDA).

    Raises:
        ConfigError: more processes on this node than GPUs.
    """
    if not launched():
        return Ranks(), device
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {ranks.local_rank} has no GPU ({torch.cuda.device_count()} here): "
                "start at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return ranks, device


def stop(ranks: Ranks, *, wait: bool = True) -> None:
    """Leave the process group, after the others have finished with it (`wait`; not on an error,
    where torchrun ends the other processes)."""
    if ranks.distributed and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The model to train: DDP-wrapped across processes, the model itself in one process.

    Every parameter of the families gets a gradient at every step, batches without boxes included
    (checked for fcos_lite and scan_mil), so DDP need not search the graph for unused ones; a family
    that breaks this makes DDP stop with an error that names the parameters."""
    if not ranks.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sampler(dataset: torch.utils.data.Dataset, ranks: Ranks, seed: int) -> torch.utils.data.DistributedSampler | None:
    """This process's share of the training split, reshuffled per epoch (`set_epoch`); None in one process."""
    if not ranks.distributed:
        return None
    return torch.utils.data.DistributedSampler(
        dataset, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True, seed=seed
    )
