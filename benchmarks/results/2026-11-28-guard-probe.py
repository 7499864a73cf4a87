"""Session 9 probe (issue 13), kept with its figures in 2026-11-28-realistic-24epoch.md: the guard's
vectors of the mixed-profile candidate, scored by today's single Gaussian, a 5-NN (faiss) and an
8-component GMM. Run from the repository root after `make model-realistic`'s steps:
    python benchmarks/results/2026-11-28-guard-probe.py
"""

import faiss
import numpy as np
from sklearn.mixture import GaussianMixture

from xray.calibration import guard_measures, split_scans
from xray.domain import Reference
from xray.engine import Engine
from xray.foreign import foreign_images

SETS = {
    "calib": ("data/calib-realistic", "val", None),
    "test": ("data/sim-realistic", "test", 300),
    "broken": ("data/ood-broken", "test", None),
    "gantry": ("data/ood-mobile-gantry", "test", None),
    "oldlook": ("data/sim", "test", 300),
}


def main() -> None:
    engine = Engine("models/default-realistic")
    vectors = {k: guard_measures(engine, split_scans(d, s, limit=n))[0] for k, (d, s, n) in SETS.items()}
    vectors["foreign"] = guard_measures(engine, [s for kind in foreign_images().values() for s in kind])[0]
    order = np.random.default_rng(0).permutation(len(vectors["calib"]))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    for measure in ("stats", "features", "both"):

        def stack(name: str, measure: str = measure) -> np.ndarray:
            if measure == "both":
                return np.stack([np.concatenate([v["stats"], v["features"]]) for v in vectors[name]])
            return np.stack([v[measure] for v in vectors[name]])

        calib = stack("calib")
        mu, sd = calib[fit].mean(0), calib[fit].std(0) + 1e-6

        def z(x: np.ndarray, mu: np.ndarray = mu, sd: np.ndarray = sd) -> np.ndarray:
            return ((x - mu) / sd).astype("float32")

        ref = Reference.fit(calib[fit])
        index = faiss.IndexFlatL2(calib.shape[1])
        index.add(z(calib[fit]))
        gmm = GaussianMixture(8, covariance_type="diag", random_state=0).fit(z(calib[fit]))
        scorers = {
            "gauss": lambda x, ref=ref: np.array([ref.distance(v) for v in x]),
            "knn5": lambda x, index=index: index.search(z(x), 5)[0].mean(1),
            "gmm8": lambda x, gmm=gmm: -gmm.score_samples(z(x)),
        }
        for name, score in scorers.items():
            threshold = np.quantile(score(calib[held]), 0.995)
            shares = " ".join(
                f"{k}={np.mean(score(stack(k)) > threshold):.3f}" for k in ("test", "broken", "gantry", "oldlook", "foreign")
            )
            print(measure, name, shares, flush=True)


if __name__ == "__main__":
    main()
