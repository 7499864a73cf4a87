"""The simple baseline: thumbnail + histogram features, a seeded forest, risk = 1 - P(declared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xray.baseline import HISTOGRAM_BINS, THUMBNAIL_HW, ThumbnailForest, thumbnail_embedding, thumbnail_features
from xray.errors import DatasetError
from xray.scan import Scan, ScanKind


def _scan(level: float, seed: int, bright_left: bool) -> Scan:
    rng = np.random.default_rng(seed)
    t = np.full((1, 64, 192), level, np.float32) + rng.normal(0, 0.02, (1, 64, 192)).astype(np.float32)
    if bright_left:
        t[:, :, :96] = 0.95
    return Scan(id=f"s{seed}", channels=np.clip(t, 0.0, 1.0), kind=ScanKind.SINGLE)


def test_features_are_a_thumbnail_and_a_grey_histogram() -> None:
    f = thumbnail_features(_scan(0.3, 0, True))
    h, w = THUMBNAIL_HW
    assert f.shape == (h * w + HISTOGRAM_BINS,)
    assert f[h * w:].sum() == pytest.approx(1.0)
    thumb = f[: h * w].reshape(h, w)
    assert thumb[:, :40].mean() > thumb[:, 56:].mean()  # the bright (empty) half stays bright
    e = np.array(thumbnail_embedding(_scan(0.3, 0, True)))
    assert np.linalg.norm(e) == pytest.approx(1.0) and abs(e.mean()) < 1e-6


def _train(seed: int) -> ThumbnailForest:
    feats = [thumbnail_features(_scan(0.2, i, True)) for i in range(8)]
    feats += [thumbnail_features(_scan(0.6, 100 + i, False)) for i in range(8)]
    labels = [["machinery"]] * 8 + [["textiles"]] * 8
    return ThumbnailForest(trees=30, seed=seed).fit(feats, labels)


def test_forest_learns_declared_categories_and_scores_declarations(tmp_path: Path) -> None:
    forest = _train(0)
    p = forest.probabilities(thumbnail_features(_scan(0.2, 999, True)))
    assert p["machinery"] > 0.8
    assert forest.risk(p, ["machinery"]) < 0.2 < 0.8 < forest.risk(p, ["textiles"])
    assert forest.risk(p, ["machinery", "textiles"]) == pytest.approx(0.0, abs=1e-9)
    assert forest.risk(p, ["tobacco"]) == 1.0  # a category it never saw
    forest.save(tmp_path / "baseline.joblib")
    assert ThumbnailForest.load(tmp_path / "baseline.joblib").probabilities(
        thumbnail_features(_scan(0.2, 999, True))) == p


def test_same_seed_same_forest() -> None:
    x = thumbnail_features(_scan(0.4, 5, True))
    assert _train(3).probabilities(x) == _train(3).probabilities(x)


def test_one_category_cannot_train() -> None:
    with pytest.raises(DatasetError, match="two declared categories"):
        ThumbnailForest().fit([np.zeros(4), np.ones(4)], [["paper"], ["paper"]])
