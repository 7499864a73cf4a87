"""The floor: a random forest on 32x96 thumbnails plus a grey-level histogram.

A model that does not beat this on the swap test (`xray evaluate --swap`) has learned
nothing worth shipping. It is trained on a split's declared categories (one sample per
declared category, so a multi-line declaration counts for each of its categories), and
scores a declaration as a verifier scores it: risk = 1 - P(a declared category).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from xray.errors import DatasetError
from xray.goods import EMPTY, GoodsTable, default_goods_table
from xray.manifest import Manifest
from xray.scan import Scan, log_view

THUMBNAIL_HW = (32, 96)
HISTOGRAM_BINS = 32


def grey_view(scan: Scan) -> np.ndarray:
    """The scan as an 8-bit picture: the log view of its first channel (pseudo-colour: its grey level)."""
    if scan.is_physical:
        return log_view(scan.channels[0])
    return np.rint(np.clip(scan.channels.mean(axis=0), 0.0, 1.0) * 255).astype(np.uint8)


def thumbnail_features(scan: Scan) -> np.ndarray:
    """32x96 thumbnail of the log view (INTER_AREA) in [0, 1], then the 32-bin grey-level histogram (shares)."""
    grey = grey_view(scan)
    h, w = THUMBNAIL_HW
    thumb = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    hist = np.bincount((grey.ravel() // (256 // HISTOGRAM_BINS)).astype(np.int64), minlength=HISTOGRAM_BINS)
    return np.concatenate([thumb.ravel(), (hist / max(grey.size, 1)).astype(np.float32)])


def thumbnail_embedding(scan: Scan) -> list[float]:
    """A stand-in scan embedding: the thumbnail, centred and of unit length (cosine = correlation).

    Lets verification by reference run end to end before a model fills `Detections.embedding`.
    """
    h, w = THUMBNAIL_HW
    v = thumbnail_features(scan)[: h * w].astype(np.float64)
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).tolist()


def declared_labels(manifest: Manifest, table: GoodsTable | None = None) -> list[str]:
    """The categories a manifest declares; `empty` for a manifest that declares none."""
    declared, _ = manifest.categories(table or default_goods_table())
    return declared or [EMPTY]


class ThumbnailForest:
    """The baseline classifier: category probabilities of a scan from its thumbnail features.

    Args:
        trees: Trees of the forest.
        seed: Its random state (the same data and seed give the same forest).
    """

    name = "baseline"

    def __init__(self, trees: int = 300, seed: int = 0):
        from sklearn.ensemble import RandomForestClassifier

        # One job: the forest is small, and the machine is shared with the engine.
        self.forest = RandomForestClassifier(
            n_estimators=trees, random_state=seed, n_jobs=1, min_samples_leaf=2, max_features="sqrt"
        )
        self.classes: list[str] = []

    def fit(self, features: Sequence[np.ndarray], labels: Sequence[Sequence[str]]) -> ThumbnailForest:
        """Fit on per-scan features and each scan's declared categories.

        Raises:
            DatasetError: fewer than two categories among the labels.
        """
        X, y = [], []
        for f, cats in zip(features, labels):
            for c in cats:
                X.append(f)
                y.append(c)
        if len(set(y)) < 2:
            raise DatasetError(f"the baseline needs at least two declared categories to learn, got {sorted(set(y))}")
        self.forest.fit(np.stack(X), np.array(y))
        self.classes = [str(c) for c in self.forest.classes_]
        return self

    def probabilities(self, features: np.ndarray) -> dict[str, float]:
        p = self.forest.predict_proba(features[None, :])[0]
        return {c: float(v) for c, v in zip(self.classes, p)}

    @staticmethod
    def risk(probabilities: dict[str, float], declared: Iterable[str]) -> float:
        """1 - P(the scan holds one of the declared categories)."""
        return float(min(1.0, max(0.0, 1.0 - sum(probabilities.get(c, 0.0) for c in set(declared)))))

    def save(self, path: str | Path) -> None:
        import joblib

        from xray.atomic import write_atomic

        write_atomic(path, lambda tmp: joblib.dump({"forest": self.forest, "classes": self.classes}, tmp))

    @classmethod
    def load(cls, path: str | Path) -> ThumbnailForest:
        import joblib

        data = joblib.load(path)
        out = cls.__new__(cls)
        out.forest, out.classes = data["forest"], data["classes"]
        return out
