"""Repeat factor sampling: images with rare classes drawn more often, reproducibly, never under DDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xray.config import TrainConfig
from xray.errors import ConfigError
from xray.train import distributed, loop
from xray.train.sampling import repeat_factors, repeat_sampler

# Ten images: class 0 in every one, class 1 in one, class 2 in half; the last holds no box.
LABELS = [np.array([0, 0, 1]), *[np.array([0, 2]) for _ in range(5)], *[np.array([0]) for _ in range(3)], np.array([])]


def test_repeat_factor_is_that_of_the_rarest_class_an_image_holds() -> None:
    factors = repeat_factors(LABELS, threshold=0.4)
    # class 1: f = 0.1, sqrt(0.4 / 0.1) = 2; class 2: f = 0.5, above the threshold: 1; class 0: 1.
    assert factors[0] == pytest.approx(2.0)
    np.testing.assert_allclose(factors[1:], 1.0)
    assert repeat_factors(LABELS, threshold=0.9)[1] == pytest.approx(np.sqrt(0.9 / 0.5))


def test_sampler_draws_images_in_proportion_to_their_factor_and_replays_from_its_seed() -> None:
    draws = [list(repeat_sampler(LABELS, 0.4, torch.Generator().manual_seed(7))) for _ in range(2)]
    assert draws[0] == draws[1]  # the loader's generator is checkpointed: a resumed run replays its order
    assert len(draws[0]) == len(LABELS)  # an epoch keeps its length
    many = np.bincount(
        [i for _ in range(400) for i in repeat_sampler(LABELS, 0.4, torch.Generator().manual_seed(_))],
        minlength=len(LABELS),
    )
    # image 0 has factor 2 and the nine others 1: it is drawn twice as often as each of them
    assert many[0] / many[1:].mean() == pytest.approx(2.0, rel=0.1)


class _Images(torch.utils.data.Dataset):
    labels = LABELS

    def __len__(self) -> int:
        return len(LABELS)

    def __getitem__(self, i: int) -> int:
        return i


def test_loader_draws_by_repeat_factor_and_refuses_it_under_ddp() -> None:
    tcfg = TrainConfig(repeat_threshold=0.4, batch_size=2, workers=0)
    built, _ = loop.build_loader(_Images(), tcfg, torch.device("cpu"))  # type: ignore[arg-type]
    assert built.sampler.__class__.__name__ == "WeightedRandomSampler"
    plain, _ = loop.build_loader(_Images(), TrainConfig(batch_size=2, workers=0), torch.device("cpu"))  # type: ignore[arg-type]
    assert plain.sampler.__class__.__name__ == "RandomSampler"
    with pytest.raises(ConfigError, match="repeat_threshold"):
        loop.build_loader(_Images(), tcfg, torch.device("cpu"), distributed.Ranks(rank=0, world_size=2))  # type: ignore[arg-type]
