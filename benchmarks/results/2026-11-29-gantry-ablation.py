"""Which of the mobile gantry's traits costs the bundled model its held-out figures?

Each variant is the held-out mobile-gantry profile with one trait set to the value of the
single-energy portal (portal-single-16bit, a training profile); "portal-single" is that portal
itself and "all-artifacts" the gantry with all of the portal's artifact strengths. 300 scans
each, the held-out benchmark's seed and code (`benchmarks.holdout.run`: guard off for the risk).

    PYTHONPATH=. .venv/bin/python benchmarks/results/2026-11-29-gantry-ablation.py [VARIANT ...]

Variants are written as temporary profile files beside the bundled ones (the simulator reads
profiles by name) and removed after each run. Figures append to runs/ablation/ablation.jsonl.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import yaml

from benchmarks import holdout

PROFILES = Path("xray/simulate/profiles")


def variants() -> dict[str, dict]:
    gantry = yaml.safe_load((PROFILES / "mobile-gantry.yaml").read_text())
    portal = yaml.safe_load((PROFILES / "portal-single-16bit.yaml").read_text())

    def gantry_with(**changes) -> dict:
        p = copy.deepcopy(gantry)
        p["artifacts"].update(changes.pop("artifacts", {}))
        return {**p, **changes}

    out = {"gantry": gantry, "portal-single": portal}
    out["photons"] = gantry_with(photons=portal["photons"])
    out["energy6"] = gantry_with(energies_mv=portal["energies_mv"])
    out["pitch"] = gantry_with(pixel_mm=portal["pixel_mm"])
    for k in gantry["artifacts"]:
        out[k] = gantry_with(artifacts={k: portal["artifacts"][k]})
    out["all-artifacts"] = gantry_with(artifacts=portal["artifacts"])
    return out


def main() -> None:
    table = variants()
    wanted = sys.argv[1:] or list(table)
    out = Path("runs/ablation")
    out.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        profile = {**table[name], "name": f"zz-ablation-{name}"}
        f = PROFILES / f"{profile['name']}.yaml"
        f.write_text(yaml.safe_dump(profile))
        t = time.time()
        try:
            r = holdout.run(Path("models/default"), out / "cache", quick=False, profile=profile["name"])
        finally:
            f.unlink()
        row = {
            "variant": name,
            "detection_at_5pct": r["at_5pct_false_alarms"]["detection_rate"],
            "roc_auc": r["roc_auc"],
            "ood_flagged": r["ood_flagged"],
            "seconds": round(time.time() - t),
        }
        print(json.dumps(row), flush=True)
        with (out / "ablation.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
