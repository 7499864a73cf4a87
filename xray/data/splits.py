"""Train/val/test splits of imported scans: stratified by category, grouped by container.

Two scans of one container (a re-scan, the two sides of a truck) look alike; putting them
in two splits would leak the test set into training. So whole groups are dealt out, and
within each stratum (a goods category) the groups go to the split furthest below its
share, so that every category with enough scans reaches every split; the rare categories
are dealt as one stratum.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from xray.errors import ConfigError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
Item = TypeVar("Item", bound=Hashable)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """The three split fractions, validated (non-negative, train > 0, summing to 1).

    Raises:
        ConfigError: naming what is wrong.
    """
    if len(fractions) != len(SPLITS):
        raise ConfigError(f"split fractions must be three numbers (train, val, test), got {list(fractions)}")
    values = tuple(float(f) for f in fractions)
    if any(f < 0 for f in values) or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be >= 0, with train > 0, and sum to 1; got {list(fractions)}")
    return values  # type: ignore[return-value]


def assign_splits(
    strata: Mapping[Item, str],
    groups: Mapping[Item, str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[Item, str]:
    """Split items into train/val/test, the same for the same inputs and seed.

    Args:
        strata: Item -> stratum (e.g. its first declared category).
        groups: Item -> group (e.g. its container id); a group never spans two splits.
            Items without a group form a group of their own.
        fractions: Shares of train, val and test.
        seed: Seed of the order in which groups are dealt.

    Returns:
        Item -> split name.
    """
    shares = check_fractions(fractions)
    members: dict[str, list[Item]] = defaultdict(list)
    for item in strata:
        members[groups.get(item) or f"\0{item}"].append(item)
    # A group's stratum is the one most of its items have (ties: the smallest name, for determinism).
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, items in members.items():
        counts = Counter(strata[i] for i in items)
        by_stratum[min(counts, key=lambda s: (-counts[s], s))].append(group)

    # Strata too small to reach every split on their own are dealt together, or they would all land in train.
    min_size = math.ceil(1 / min(f for f in shares if f > 0) - 1e-9)
    rare = [s for s, gs in by_stratum.items() if sum(len(members[g]) for g in gs) < min_size]
    if len(rare) > 1:
        by_stratum["\0rare"] = sorted(g for s in rare for g in by_stratum.pop(s))

    rng = random.Random(seed)
    split_of: dict[Item, str] = {}
    for stratum in sorted(by_stratum):
        group_ids = sorted(by_stratum[stratum])
        rng.shuffle(group_ids)
        # Large groups first, so that the small ones can even out the shares afterwards.
        group_ids.sort(key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in group_ids)
        filled = [0, 0, 0]
        for group in group_ids:
            deficits = [shares[k] * total - filled[k] for k in range(len(SPLITS))]
            k = max(range(len(SPLITS)), key=lambda j: (shares[j] > 0, deficits[j], -j))
            filled[k] += len(members[group])
            for item in members[group]:
                split_of[item] = SPLITS[k]
    return split_of
