"""Session 10 probe (issue 13), kept with its figures in 2026-11-28-realistic-ft.md: which trait of the held-out
mobile-gantry profile breaks the mixed-profile candidate? Each variant sets one trait to the portal-dual-16bit
profile's level; 100 scans each (seed 2031); box AP by class of runs/default-realistic/best.pt.
Run from the repository root after `make model-realistic`'s training step:
    python benchmarks/results/2026-11-28-gantry-ablation.py OUT_DIR
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

import xray.simulate.profile as profile
from xray.simulate.dataset import generate_dataset


def main(out_dir: str) -> None:
    src = pathlib.Path(profile.__file__).parent / "profiles"
    tmp = pathlib.Path(tempfile.mkdtemp())
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp / f.name)
    base = yaml.safe_load((src / "mobile-gantry.yaml").read_text())
    portal = yaml.safe_load((src / "portal-dual-16bit.yaml").read_text())

    def art(*names: str) -> dict:
        return {"artifacts": {**base["artifacts"], **{k: portal["artifacts"][k] for k in names}}}

    variants = {
        "g-asis": {},
        "g-photons": {"photons": portal["photons"]},
        "g-6mv": {"energies_mv": [6.0]},
        "g-pixel": {"pixel_mm": portal["pixel_mm"]},
        "g-noartifacts": {"artifacts": {**portal["artifacts"], "misregistration": [0.0, 0.0]}},
        "g-noafterglow-jitter": {"artifacts": {**base["artifacts"], "afterglow": [0.0, 0.0], "jitter": [0.0, 0.0]}},
        "g-beam": art("beam_profile"),
        "g-scatter": art("scatter"),
        "g-starvation": art("starvation"),
        "g-bands-stripes": art("end_bands", "row_stripes", "dead_rows"),
    }
    for name, change in variants.items():
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump({**base, **change, "name": name}))
    profile._profile_dir = lambda: tmp  # the variants are read like bundled profiles, for this process only
    profile.load_profile.cache_clear()
    for name in variants:
        out = pathlib.Path(out_dir) / name
        if not (out / "dataset.json").exists():
            generate_dataset(out, count=100, seed=2031, workers=1, mismatch_rate=0.4, splits=(0, 0, 1),
                             progress=False, profiles=[name])
        r = subprocess.run([sys.executable, "-m", "xray", "evaluate", "--level", "box", "--model",
                            "runs/default-realistic/best.pt", "--data", str(out), "--split", "test", "--quiet"],
                           capture_output=True, text=True)
        print(f"== {name}\n{r.stdout}{r.stderr}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
