"""In-profile concealment detection by scanner profile, for candidates evaluated on the same test split.

    PYTHONPATH=. python benchmarks/results/2026-12-07-concealment-by-profile.py data/sim-realistic4 NAME=VERDICTS_DIR ...

VERDICTS_DIR is `xray evaluate --level scan --out`'s folder; the dataset's truth.jsonl gives each scan's
profile. The threshold is each candidate's 1 % (and 5 %) false-alarm point over all clean test scans, by the
held-out benchmark's rule, so a profile's row shows where that one operating point leaves its concealments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.holdout import detection_at


def main() -> None:
    data, candidates = Path(sys.argv[1]), sys.argv[2:]
    profile = {}
    for line in (data / "truth.jsonl").read_text().splitlines():
        r = json.loads(line)
        profile[r["scan_id"]] = r.get("profile", "?")
    rows: dict[str, list[str]] = {}
    names = []
    for arg in candidates:
        name, verdicts = arg.split("=", 1)
        names.append(name)
        recs = [json.loads(x) for x in (Path(verdicts) / "verdict_records.jsonl").read_text().splitlines()]
        risk = np.array([r["risk"] for r in recs])
        bad = np.array([r["mismatch"] for r in recs])
        prof = np.array([profile[r["scan_id"]] for r in recs])
        hidden = np.array([r["scenario"] == "concealment" for r in recs])
        cuts = [detection_at(risk, bad, fa)["threshold"] for fa in (0.01, 0.05)]
        for p in sorted(set(prof)):
            sel = hidden & (prof == p)
            key = f"{p} ({sel.sum()})"
            rows.setdefault(key, []).append(" / ".join(f"{np.mean(risk[sel] >= t):.0%}" for t in cuts))
    print("| concealment found at 1 % / 5 % false alarms | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key, cells in rows.items():
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
