"""Session 13: the hold check (`xray/hold.py`) measured through the engine.

For each test split given: per profile, how many empty and loaded containers are measured empty
and the range of the hold's load; the verdict channel of every empty container declared with
goods, without and with the hold (as deployed: guard on); loaded scans whose channel changed.
Then the images that are not cargo scans (`xray.foreign`).

    .venv/bin/python benchmarks/results/2026-11-29-hold-probe.py --model models/default \
        data/sim-realistic4 runs/default-realistic/bench-cache/holdout-mobile-gantry-300 data/ood-broken-300
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from xray.engine import Engine  # noqa: E402
from xray.foreign import foreign_images  # noqa: E402
from xray.manifest import Manifest  # noqa: E402
from xray.sources.files import read_scan  # noqa: E402
from xray.verify import VerifierConfig, verify  # noqa: E402


def probe(engine: Engine, config: VerifierConfig, root: Path) -> None:
    truth = {t["scan_id"]: t for t in map(json.loads, (root / "truth.jsonl").read_text().splitlines())}
    measured: collections.Counter = collections.Counter()
    loads: dict[tuple, list[float]] = collections.defaultdict(list)
    channels: collections.Counter = collections.Counter()
    changed = 0
    for image in json.loads((root / "annotations" / "test.json").read_text())["images"]:
        t = truth[image["scan_id"]]
        low = root / "images" / image["low_file_name"] if image.get("low_file_name") else None
        found = engine.detect(read_scan(root / "images" / image["file_name"], low))
        key = (t["profile"], "loaded" if t["loaded"] else "empty")
        measured[key + ("not measured" if found.hold is None else found.hold.empty,)] += 1
        if found.hold is not None:
            loads[key].append(found.hold.load)
        if not t["declared"]:
            continue
        manifest = Manifest.load(root / "manifests" / f"{image['scan_id']}.json")
        with_hold = verify(found, manifest, config=config).channel.value
        without = verify(found.model_copy(update={"hold": None}), manifest, config=config).channel.value
        if not t["loaded"]:
            ood = found.domain is not None and not found.domain.in_domain
            channels[(t["profile"], "out of domain" if ood else "in domain", without, with_hold)] += 1
        else:
            changed += with_hold != without
    print(f"\n{root}")
    for k, n in sorted(measured.items(), key=str):
        print(f"  {k[0]:20s} {k[1]:6s} measured empty: {k[2]!s:12s} {n}")
    for k, v in sorted(loads.items()):
        print(f"  {k[0]:20s} {k[1]:6s} load {min(v):.3f}-{max(v):.3f}")
    print("  empty containers declared with goods (profile, guard, channel without -> with the hold):")
    for k, n in sorted(channels.items()):
        print(f"    {k}: {n}")
    print(f"  loaded scans with goods declared whose channel changed: {changed}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="models/default")
    p.add_argument("data", nargs="+", type=Path)
    args = p.parse_args()
    engine = Engine(args.model)
    config = VerifierConfig.from_card(engine.card)
    for root in args.data:
        probe(engine, config, root)
    foreign = collections.Counter()
    for kind, scans in foreign_images().items():
        for scan in scans:
            hold = engine.detect(scan).hold
            foreign[(kind, "not measured" if hold is None else hold.empty)] += 1
    print("\nnot cargo (kind, measured empty):", dict(foreign))


if __name__ == "__main__":
    main()
