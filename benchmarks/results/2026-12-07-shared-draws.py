"""How often the training augmentation's transforms apply together, with albumentations' shared seeding
(`augment.draws: shared`, as every recipe trained until session 16) and with a seed per transform
(`independent`). Stage 6's recipe (models/default-realistic4-ft2.yaml), 2,000 images.

    PYTHONPATH=. .venv/bin/python benchmarks/results/2026-12-07-shared-draws.py

Measured 2026-12-07: shared, 9 distinct sets of applied transforms, 444 starved images, none of them
left unexported; independent, 1,451 sets, 502 starved, 205 of them not exported (a starved 16-bit scan,
as a mobile gantry's is).
"""

from __future__ import annotations

import numpy as np

from xray.config import load_config
from xray.data.augment import Augment


def main() -> None:
    c = load_config("models/default-realistic4-ft2.yaml").augment
    for draws in ("shared", "independent"):
        aug = Augment(c.model_copy(update={"draws": draws}))
        pipe = aug.pipeline
        names = [type(t).__name__ + getattr(t, "kind", "") for t in pipe.transforms]
        sets: set[tuple[int, ...]] = set()
        starved = unexported = 0
        rng = np.random.default_rng(0)
        for _ in range(2000):
            aug._seed(pipe, rng)
            # albumentations decides "apply" with the transform's first draw: py_random.random() < p
            applied = tuple(int(t.py_random.random() < t.p) for t in pipe.transforms)
            sets.add(applied)
            d = dict(zip(names, applied, strict=True))
            if d["ScannerArtifactstarvation"]:
                starved += 1
                unexported += not d["DisplayExport"]
        print(f"{draws}: {len(sets)} distinct sets of applied transforms; {starved} starved, {unexported} of them not exported")


if __name__ == "__main__":
    main()
