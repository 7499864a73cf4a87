"""Which training images an epoch draws: plain shuffling, or repeat factor sampling for rare classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

__all__ = ["repeat_factors", "repeat_sampler"]


def repeat_factors(labels: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """Each image's repeat factor: max(1, sqrt(threshold / f)) over the classes it holds, where f is the
    share of the images holding that class (LVIS). Images without boxes get 1."""
    holds = [np.unique(lab) for lab in labels]
    counts: dict[int, int] = {}
    for classes in holds:
        for c in classes.tolist():
            counts[c] = counts.get(c, 0) + 1
    n = len(labels)
    per_class = {c: max(1.0, float(np.sqrt(threshold / (k / n)))) for c, k in counts.items()}
    return np.array([max((per_class[c] for c in classes.tolist()), default=1.0) for classes in holds])


def repeat_sampler(labels: Sequence[np.ndarray], threshold: float, generator: torch.Generator) -> WeightedRandomSampler:
    """An epoch of len(labels) draws, with replacement, each image in proportion to its repeat factor.
    Drawn from `generator`, so a resumed run replays the order."""
    weights = repeat_factors(labels, threshold).tolist()
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
