"""Can the verifier read concealment better from the boxes it already gets? (session 17, issue 13)

    PYTHONPATH=. python benchmarks/results/2026-12-07-concealment-evidence.py MODEL_DIR [DATA]

Concealment (tobacco or firearms hidden behind declared goods) is the mismatch every candidate
misses most, in profile and on the held-out gantry. The verifier's tobacco evidence is the best
tobacco box score (or the image-level score, when calibration picks it). This scores the test split
(default data/sim-realistic4) and asks whether other readings of the same detections separate the
tobacco concealments from the loaded clean scans better: the image-level score, the mean of the
three best boxes, how many boxes, their area, and a cross-validated logistic regression of them all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from xray.calibration import score_split
from xray.engine import Engine

NAMES = ["best box", "image-level", "mean of top 3", "boxes >= 0.3", "log(1 + score x area)", "log(1 + area >= 0.3)"]


def features(found, category: str = "tobacco") -> list[float]:
    boxes = [(d.score, (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])) for d in found.detections if d.category == category]
    scores = sorted((s for s, _ in boxes), reverse=True) + [0.0, 0.0, 0.0]
    return [
        scores[0],
        float(found.image_scores.get(category, 0.0)),
        float(np.mean(scores[:3])),
        float(sum(s >= 0.3 for s, _ in boxes)),
        float(np.log1p(sum(s * a for s, a in boxes))),
        float(np.log1p(sum(a for s, a in boxes if s >= 0.3))),
    ]


def main() -> None:
    model = Path(sys.argv[1])
    data = Path(sys.argv[2] if len(sys.argv) > 2 else "data/sim-realistic4")
    records = score_split(Engine(model, threads=1), data, "test", progress=True)
    chosen = [r for r in records if (not r["mismatch"] and r["loaded_truth"])
              or (r["scenario"] == "concealment" and "tobacco" in r["undeclared_truth"])]
    y = np.array([r["scenario"] == "concealment" for r in chosen])
    X = np.array([features(r["found"]) for r in chosen])
    print(f"{model}: {len(chosen)} scans, {int(y.sum())} tobacco concealments, the rest loaded and clean")
    for i, name in enumerate(NAMES):
        print(f"  {name:24s} AUC {roc_auc_score(y, X[:, i]):.3f}")
    for cols in ([0, 1], list(range(len(NAMES)))):
        p = cross_val_predict(LogisticRegression(max_iter=2000), X[:, cols], y, cv=5, method="predict_proba")[:, 1]
        print(f"  logistic of {', '.join(NAMES[c] for c in cols)}: AUC {roc_auc_score(y, p):.3f} (5-fold)")


if __name__ == "__main__":
    main()
