"""Data-parallel training: two processes on the CPU (gloo), set up as torchrun sets them up,
train the tiny model and hold the same weights; only rank 0 writes; resume continues the run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from fixtures_dataset import write_dataset

from xray.model.factory import load_checkpoint
from xray.train import distributed, loop

TINY = Path(__file__).resolve().parents[1] / "models" / "tiny.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, ports: tuple[int, int], data: Path, out: Path, spy: Path) -> None:
    """One process of the run, with the variables torchrun would set; records its weights
    after each epoch and which ranks saved checkpoints."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train_one_epoch, save_checkpoint = loop.train_one_epoch, loop.save_checkpoint

    def train_and_record(model, *args, **kw):
        losses = train_one_epoch(model, *args, **kw)
        torch.save({"model": model.module.state_dict(), "losses": losses}, spy / f"rank{rank}-epoch{kw['epoch']}.pt")
        return losses

    def save_and_record(path, state):
        (spy / f"saved-by-rank{rank}").touch()
        save_checkpoint(path, state)

    loop.train_one_epoch, loop.save_checkpoint = train_and_record, save_and_record  # type: ignore[assignment]
    # 8 scans over 2 processes at batch 2: two steps per process per epoch.
    summary = loop.fit(data=data, config=TINY, out=out, epochs=1, device="cpu", progress=False, plots=False)
    assert summary["world_size"] == world and summary["rank"] == rank
    # The resumed run is a new job: its own rendezvous port, as torchrun would give it. On the same
    # port, rank 1 could reach rank 0's first store while it was being torn down (a broken pipe, seen
    # once under load).
    os.environ["MASTER_PORT"] = str(ports[1])
    loop.fit(data=data, config=TINY, out=out, epochs=2, device="cpu", progress=False, plots=False, resume=True)


def test_two_processes_train_the_same_weights_and_rank_0_writes(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", splits={"train": 8}, seed=5)
    out, spy = tmp_path / "run", tmp_path / "spy"
    spy.mkdir()
    first = _free_port()
    second = next(p for p in iter(_free_port, None) if p != first)
    mp.spawn(_rank, args=(2, (first, second), data, out, spy), nprocs=2, join=True)

    assert sorted(p.name for p in spy.glob("saved-by-*")) == ["saved-by-rank0"]
    for epoch in (0, 1):  # epoch 1 came from the resumed run
        a, b = (torch.load(spy / f"rank{r}-epoch{epoch}.pt") for r in (0, 1))
        assert a["model"].keys() == b["model"].keys()
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), name
        assert a["losses"] == b["losses"]  # reduced across the ranks
    first = torch.load(spy / "rank0-epoch0.pt")["model"]
    last = torch.load(spy / "rank0-epoch1.pt")["model"]
    assert any(not torch.equal(first[k], last[k]) for k in first)  # the resumed epoch trained
    ckpt = load_checkpoint(out / "last.pt", map_location="cpu")
    assert ckpt["epoch"] == 1
    assert all(torch.equal(ckpt["model"][k], last[k]) for k in last)
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header + one row per epoch


def test_one_process_outside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in distributed.LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    ranks, device = distributed.start(torch.device("cpu"))
    assert ranks == distributed.Ranks() and ranks.main and not ranks.distributed and device.type == "cpu"
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, ranks, device) is model
    assert torch.equal(ranks.mean(torch.ones(3)), torch.ones(3))


def test_ddp_flag_is_refused_under_torchrun_and_below_one(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    from xray.cli import main

    argv = ["train", "--data", "d", "--out", "o", "--ddp"]
    assert main([*argv, "0"]) == 2
    for var, value in zip(distributed.LAUNCH_VARS, ("0", "2", "127.0.0.1", "29500")):
        monkeypatch.setenv(var, value)
    assert main([*argv, "2"]) == 2
    assert "under torchrun, leave it out" in capsys.readouterr().err
