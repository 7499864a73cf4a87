"""The figures issue 13 measures, side by side, for candidate models exported by the tail of `make model`.

    python benchmarks/results/2026-11-29-compare-candidates.py NAME=MODEL_DIR:VERDICTS_DIR ...

MODEL_DIR holds model.json (after export, calibrate --flip, calibrate --domain and the held-out
benchmark with --record-holdout); VERDICTS_DIR is `xray evaluate --level scan --out`'s folder.
Detection by scenario is at the threshold that keeps the test split's clean scans at 1 % and 5 %
false alarms (the same rule as the held-out benchmark).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def at_false_alarm(clean: np.ndarray, fa: float) -> float:
    ranked = np.sort(clean)[::-1]
    allowed = int(fa * len(ranked))
    return float(ranked[allowed]) + 1e-9 if allowed < len(ranked) else 0.0


def main() -> None:
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    names = []
    for arg in sys.argv[1:]:
        name, dirs = arg.split("=", 1)
        model, verdicts = (Path(p) for p in dirs.split(":"))
        names.append(name)
        card = json.loads((model / "model.json").read_text())
        test = card["metrics"]["test"]
        rows["box mAP50 / mAP, test"][name] = (
            f"{test.get('mAP50', float('nan')):.3f} / {test.get('mAP', float('nan')):.3f}"
        )
        cal = card["calibration"]
        rows["calibration set: AUC; detection at its false alarms"][name] = (
            f"{cal['roc_auc_by_rule'][cal['evidence_rule']]:.3f}; {cal['detection_rate']:.1%} at {cal['false_alarm']:.2%}"
        )
        v = json.loads((verdicts / "verdicts.json").read_text())
        rows["in profile, test: detection; false alarms (calibrated threshold); AUC"][name] = (
            f"{v['detection_rate']:.1%}; {v['false_alarm_rate']:.1%}; {v['roc_auc']:.3f}"
        )
        recs = [json.loads(line) for line in (verdicts / "verdict_records.jsonl").read_text().splitlines()]
        risk = np.array([r["risk"] for r in recs])
        bad = np.array([r["mismatch"] for r in recs])
        for fa in (0.01, 0.05):
            t = at_false_alarm(risk[~bad], fa)
            rows[f"in profile, test: detection at {fa:.0%} false alarms"][name] = f"{np.mean(risk[bad] >= t):.1%}"
            for kind in sorted({r["scenario"] for r in recs if r["mismatch"]}):
                sel = np.array([r["scenario"] == kind for r in recs]) & bad
                rows[f"  {kind} ({sel.sum()}) at {fa:.0%}"][name] = f"{np.mean(risk[sel] >= t):.1%}"
        h = card.get("holdout") or {}
        at5 = h.get("at_5pct_false_alarms") or {}
        rows["held-out gantry: detection at 5 % false alarms; AUC; flagged out of domain"][name] = (
            f"{at5.get('detection_rate', float('nan')):.1%}; {h.get('roc_auc', float('nan')):.3f}; {h.get('ood_flagged', float('nan')):.1%}"
        )
        measured = (card.get("domain") or {}).get("measured") or {}
        rows["guard flags: in-domain test / broken"][name] = " / ".join(
            f"{measured[k]['flagged']:.1%}" for k in ("in_domain_test", "broken") if k in measured
        )
    print("| | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, cells in rows.items():
        print(f"| {label} | " + " | ".join(cells.get(n, "") for n in names) + " |")


if __name__ == "__main__":
    main()
