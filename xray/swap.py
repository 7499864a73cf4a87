"""The swap test: a site's own metric, on its own archive (`xray evaluate --swap`).

Each held-out scan that declares goods is scored twice: with its declaration, and with a
declaration of one category drawn (fixed seed) among those that explain none of the
declared goods. A scorer's risk should be low for the first and high for the second.
Reported per scorer: the swap-detection rate at chosen false-alarm rates on the true
declarations (thresholds by the rule of `xray.verify.calibrate`, the one `xray calibrate` uses),
ROC AUC, a per-category table, and the confusion of declared vs recognised category. The
simple baseline (`xray.baseline`) is scored on the same pairs: a model that does not beat
it has learned nothing worth shipping, and the report says so.

The truth is the declarations table: on a real archive some declarations are wrong
(clerical errors, misdeclarations), which caps what any scorer can reach.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from xray.baseline import ThumbnailForest, declared_labels, thumbnail_features
from xray.errors import DatasetError
from xray.goods import EMPTY, GoodsTable, default_goods_table, goods_table
from xray.manifest import Manifest, ManifestLine
from xray.scan import Scan
from xray.verify import Detector, ReferenceScorer, VerifierConfig, evidence, verify

FALSE_ALARMS = (0.05, 0.01)
SWAP_STREAM = 14  # the swap draw's own stream: the same seed gives the same swaps for every scorer


class PairScorer(Protocol):
    """Scores (scan, declaration) pairs: `observe` runs the model once per scan, `risk` per declaration."""

    name: str

    def observe(self, scan: Scan) -> Any: ...

    def risk(self, observed: Any, manifest: Manifest) -> float: ...

    def recognised(self, observed: Any) -> str:
        """The category the scorer sees most of (`empty`: none), for the confusion matrix."""
        ...


class ModelScorer:
    """The engine's detections once per scan, then the verifier's risk for each manifest."""

    def __init__(
        self,
        engine: Detector,
        config: VerifierConfig | None = None,
        reference: ReferenceScorer | None = None,
        name: str = "model",
        seen: dict[str, Any] | None = None,
    ):
        """`seen`: observations by scan id, shared by scorers of one engine under different
        verifier configs, so that the engine runs once per scan for all of them."""
        self.engine, self.reference, self.name, self.seen = engine, reference, name, seen
        self.config = config if config is not None else VerifierConfig.from_card(engine.card)
        self.table = goods_table(self.config.goods_table)  # the model card's: cargo or parcel categories

    def observe(self, scan: Scan) -> Any:
        if self.seen is None:
            return self.engine.detect(scan)
        if scan.id not in self.seen:
            self.seen[scan.id] = self.engine.detect(scan)
        return self.seen[scan.id]

    def risk(self, observed: Any, manifest: Manifest) -> float:
        return verify(observed, manifest, config=self.config, table=self.table, reference=self.reference).risk

    def recognised(self, observed: Any) -> str:
        ev = evidence(
            observed.detections, self.table, observed.image_scores, self.config.image_weight, self.config.presence
        )
        best = max(ev, key=lambda c: ev[c])
        return best if ev[best] >= self.config.present / 2 else EMPTY


class BaselineScorer:
    """The floor: the thumbnail forest's 1 - P(a declared category)."""

    name = "baseline"

    def __init__(self, forest: ThumbnailForest, table: GoodsTable | None = None):
        self.forest = forest
        self.table = table or default_goods_table()

    def observe(self, scan: Scan) -> Any:
        return self.forest.probabilities(thumbnail_features(scan))

    def risk(self, observed: Any, manifest: Manifest) -> float:
        return self.forest.risk(observed, declared_labels(manifest, self.table))

    def recognised(self, observed: Any) -> str:
        return str(max(observed, key=lambda c: observed[c]))


def swap_category(rng: np.random.Generator, declared: Sequence[str], table: GoodsTable) -> str:
    """A category that explains none of the declared ones (nor is explained by them)."""
    choices = [k for k in table.keys if not any(table.compatible(k, d) for d in declared)]
    return choices[int(rng.integers(len(choices)))]


@dataclass
class SwapPair:
    scan_id: str
    declared: list[str]
    swapped: str
    true_manifest: Manifest
    swap_manifest: Manifest


@dataclass
class ScorerResult:
    true_risk: list[float] = field(default_factory=list)
    swap_risk: list[float] = field(default_factory=list)
    recognised: list[str] = field(default_factory=list)


def swap_pairs(
    records: Sequence[Any], *, seed: int = 0, table: GoodsTable | None = None
) -> tuple[list[tuple[Any, SwapPair]], int]:
    """(record, pair) for each scan with a declared category, in the split's order, and the number
    of scans left out (declared empty, or only codes that map to no category).

    The swapped declaration is an HS code that another scan of the split declares for that
    category (as a real wrong declaration would read, and as a reference index keys it), or
    the category's table code when no scan declares it.
    """
    table = table or default_goods_table()
    rng = np.random.default_rng([seed, SWAP_STREAM])
    manifests = [Manifest.load(r.manifest_path) for r in records]
    seen_codes: dict[str, set[str]] = defaultdict(set)
    for m in manifests:
        for line in m.lines:
            c = table.category_of(line.hs_code)
            if c is not None:
                seen_codes[c].add(line.hs_code)
    pairs, skipped = [], 0
    for r, manifest in zip(records, manifests):
        declared, _ = manifest.categories(table)
        if not declared:
            skipped += 1
            continue
        swapped = swap_category(rng, declared, table)
        codes = sorted(seen_codes[swapped]) or [table.hs_code_for(swapped)]
        code = codes[int(rng.integers(len(codes)))]
        fake = Manifest(container_id=manifest.container_id, lines=[ManifestLine(hs_code=code)])
        pairs.append((r, SwapPair(r.scan_id, declared, swapped, manifest, fake)))
    return pairs, skipped


def _auc(negatives: Sequence[float], positives: Sequence[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not negatives or not positives:
        return None
    return float(roc_auc_score([0] * len(negatives) + [1] * len(positives), [*negatives, *positives]))


def detection_at(metrics: dict[str, Any], false_alarm: float) -> float:
    """The swap-detection rate in `swap_metrics` output at a false-alarm rate it was run with."""
    return float(metrics["at_false_alarm"][f"{false_alarm:g}"]["detection_rate"])


def red_threshold(true_risk: Sequence[float], false_alarm: float) -> float:
    """The lowest threshold that flags at most `false_alarm` of the true declarations: the rule of
    `xray.verify.calibrate`, without its cap at 1 (a scorer may give a true declaration risk 1)."""
    ranked = sorted(true_risk, reverse=True)
    allowed = int(false_alarm * len(ranked))
    if allowed >= len(ranked):
        return float(min(ranked, default=0.0))
    return float(np.nextafter(ranked[allowed], np.inf))


def swap_metrics(
    true_risk: Sequence[float], swap_risk: Sequence[float], *, false_alarms: Sequence[float] = FALSE_ALARMS
) -> dict[str, Any]:
    """ROC AUC of true vs swapped declarations, and the swap-detection rate at each false-alarm rate
    (threshold: the lowest risk that sends at most that share of true declarations to red)."""
    t, s = list(map(float, true_risk)), list(map(float, swap_risk))
    at: dict[str, Any] = {}
    for fa in false_alarms:
        red = red_threshold(t, fa)
        at[f"{fa:g}"] = {
            "threshold": red,
            "detection_rate": float(np.mean([v >= red for v in s])),
            "false_alarm_rate": float(np.mean([v >= red for v in t])),
        }
    return {
        "pairs": len(t),
        "roc_auc": _auc(t, s),
        "at_false_alarm": at,
        "mean_risk": {"true": float(np.mean(t)), "swapped": float(np.mean(s))},
    }


def _per_category(pairs: Sequence[SwapPair], res: ScorerResult, red: float) -> dict[str, dict[str, Any]]:
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by[p.declared[0]].append(i)
    out = {}
    for c in sorted(by):
        idx = by[c]
        t, s = [res.true_risk[i] for i in idx], [res.swap_risk[i] for i in idx]
        out[c] = {
            "scans": len(idx),
            "roc_auc": _auc(t, s),
            "detection_rate": float(np.mean([v >= red for v in s])),
            "false_alarm_rate": float(np.mean([v >= red for v in t])),
            "recognised": float(np.mean([res.recognised[i] in pairs[i].declared for i in idx])),
        }
    return out


def _confusion(pairs: Sequence[SwapPair], res: ScorerResult, labels: list[str]) -> list[list[int]]:
    index = {c: i for i, c in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for p, rec in zip(pairs, res.recognised):
        m[index[p.declared[0]]][index.get(rec, index[EMPTY])] += 1
    return m


def train_baseline(
    data: str | Path, *, split: str = "train", limit: int | None = None, seed: int = 0, progress: bool = True
) -> ThumbnailForest:
    """The baseline forest, trained on a split's scans and declared categories.

    Raises:
        DatasetError: the split is missing, or declares fewer than two categories.
    """
    from xray.data.format import goods_table_name, split_records
    from xray.sources.files import read_scan

    table = goods_table(goods_table_name(data))
    feats, labels = [], []
    for r in tqdm(split_records(data, split)[:limit], desc=f"baseline {split}", unit="scan", disable=not progress):
        scan = read_scan(r.high, r.low, scan_id=r.scan_id, pixel_mm=r.pixel_mm)
        feats.append(thumbnail_features(scan))
        labels.append(declared_labels(Manifest.load(r.manifest_path), table))
    if not feats:
        raise DatasetError(f"{data}: split {split!r} has no scans to train the baseline on")
    return ThumbnailForest(seed=seed).fit(feats, labels)


def _clerical(pairs: Sequence[SwapPair], res: ScorerResult, wrong: dict[str, bool]) -> dict[str, Any] | None:
    """How well the risk of the archive's own declarations finds its known clerical errors."""
    t = [(r, wrong[p.scan_id]) for p, r in zip(pairs, res.true_risk) if p.scan_id in wrong]
    if not t:
        return None
    bad = [r for r, w in t if w]
    good = [r for r, w in t if not w]
    return {"scans": len(t), "wrong_declarations": len(bad), "roc_auc": _auc(good, bad)}


def _verified(
    pairs: Sequence[SwapPair], res: ScorerResult, wrong: dict[str, bool], false_alarms: Sequence[float]
) -> dict[str, Any]:
    """The swap metrics on the scans whose declaration the archive's truth confirms.

    A wrong declaration scored "true" is a mismatch a good scorer flags, so on the
    declarations as written it counts as a false alarm: with 10 % of them wrong, no scorer
    can reach 85 % at 1 % false alarms. A site gets this view from its inspection outcomes.
    """
    keep = [i for i, p in enumerate(pairs) if p.scan_id in wrong and not wrong[p.scan_id]]
    m = swap_metrics([res.true_risk[i] for i in keep], [res.swap_risk[i] for i in keep], false_alarms=false_alarms)
    return m | {"excluded_wrong_declarations": sum(1 for p in pairs if wrong.get(p.scan_id))}


def read_archive_truth(path: str | Path) -> dict[str, bool]:
    """scan_id -> wrong declaration, from a stand-in archive's `truth_loaded.csv`.

    Raises:
        DatasetError: the file is missing or lacks the columns.
    """
    import csv

    path = Path(path)
    try:
        with open(path, newline="") as f:
            return {row["scan_id"]: row["wrong_declaration"] in ("1", "true", "True") for row in csv.DictReader(f)}
    except (OSError, KeyError) as e:
        raise DatasetError(f"{path}: not a stand-in archive truth table (scan_id, wrong_declaration): {e}") from e


def swap_test(
    scorers: Sequence[PairScorer],
    data: str | Path,
    *,
    split: str = "test",
    seed: int = 0,
    limit: int | None = None,
    false_alarms: Sequence[float] = FALSE_ALARMS,
    archive_truth: dict[str, bool] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the swap test of each scorer on a split; every scan is read once and observed once per scorer.

    Raises:
        DatasetError: the split is missing or has no scan with a declared category.
    """
    from xray.data.format import goods_table_name, split_records
    from xray.sources.files import read_scan

    table = goods_table(goods_table_name(data))  # the categories the dataset's declarations map to
    records = split_records(data, split)[:limit]
    # The test takes each scan's own declaration as true; a scan whose truth says it is a
    # mismatch (a simulated set's smuggled goods, an archive's inspection outcome) is no true one.
    known = [r for r in records if r.truth and r.truth.get("mismatch") is True]
    records = [r for r in records if not (r.truth and r.truth.get("mismatch") is True)]
    pairs_with, skipped = swap_pairs(records, seed=seed, table=table)
    if not pairs_with:
        raise DatasetError(f"{data}: split {split!r} has no scan with a declared goods category to swap")
    results = {s.name: ScorerResult() for s in scorers}
    for r, p in tqdm(pairs_with, desc=f"swap {split}", unit="scan", disable=not progress):
        scan = read_scan(r.high, r.low, scan_id=r.scan_id, pixel_mm=r.pixel_mm)
        for s in scorers:
            seen = s.observe(scan)
            res = results[s.name]
            res.true_risk.append(s.risk(seen, p.true_manifest))
            res.swap_risk.append(s.risk(seen, p.swap_manifest))
            res.recognised.append(s.recognised(seen))
    pairs = [p for _, p in pairs_with]
    labels = [*table.keys, EMPTY]
    report: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "seed": seed,
        "scans": len(pairs) + skipped + len(known),
        "pairs": len(pairs),
        "skipped_not_declaring_goods": skipped,
        "skipped_known_mismatch": len(known),
        "false_alarms": list(false_alarms),
        "categories": labels,
        "scorers": {},
    }
    for name, res in results.items():
        m = swap_metrics(res.true_risk, res.swap_risk, false_alarms=false_alarms)
        red = m["at_false_alarm"][f"{false_alarms[0]:g}"]["threshold"]
        m["recognised_rate"] = float(np.mean([c in p.declared for p, c in zip(pairs, res.recognised)]))
        m["per_category"] = _per_category(pairs, res, red)
        m["confusion"] = _confusion(pairs, res, labels)
        if archive_truth:
            m["clerical_errors"] = _clerical(pairs, res, archive_truth)
            m["verified"] = _verified(pairs, res, archive_truth, false_alarms)
        report["scorers"][name] = m
    report["conclusion"] = conclusion(report)
    report["records"] = [
        {
            "scan_id": p.scan_id,
            "declared": p.declared,
            "swapped": p.swapped,
            **{f"{n}_true": results[n].true_risk[i] for n in results},
            **{f"{n}_swap": results[n].swap_risk[i] for n in results},
            **{f"{n}_recognised": results[n].recognised[i] for n in results},
            **({"known_wrong": archive_truth.get(p.scan_id)} if archive_truth else {}),
        }
        for i, p in enumerate(pairs)
    ]
    return report


def conclusion(report: dict[str, Any]) -> str:
    """One sentence per scorer: does it beat the baseline by swap AUC?

    Where the archive's truth is known (`verified`), that view decides: the test scores each
    scan with its true declaration, and a clerical error is not one. The comparison on the
    declarations as written is still stated, with what caps it: flagging a clerical error
    there counts as a false alarm, so the better a scorer finds them, the lower its AUC.
    """
    scorers = report["scorers"]
    if "baseline" not in scorers or len(scorers) < 2:
        return "no baseline in this run: nothing to compare with"
    base = scorers["baseline"]
    lines = []
    for name, m in scorers.items():
        if name == "baseline":
            continue
        verified = "verified" in m and "verified" in base
        auc, floor = (
            (m["verified"]["roc_auc"], base["verified"]["roc_auc"]) if verified else (m["roc_auc"], base["roc_auc"])
        )
        view = " on verified declarations" if verified else ""
        verdict = "beats" if auc > floor else "does NOT beat"
        tail = "" if auc > floor else ": it has learned nothing worth shipping on this data"
        line = f"{name}{view} (swap AUC {auc:.3f}) {verdict} the simple baseline (swap AUC {floor:.3f}){tail}"
        if verified:
            wrong = m["verified"].get("excluded_wrong_declarations", 0)
            line += (
                f" (as written, where flagging one of the {wrong} known clerical errors counts as a false alarm:"
                f" {m['roc_auc']:.3f} against {base['roc_auc']:.3f})"
            )
        lines.append(line)
    return "; ".join(lines) + "."


def plot_swap(report: dict[str, Any], out: str | Path) -> list[Path]:
    """swap_confusion.png (declared vs recognised category, per scorer) and swap_roc.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out = Path(out)
    labels = report["categories"]
    names = list(report["scorers"])
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 6), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], names):
        m = np.array(report["scorers"][name]["confusion"], dtype=float)
        rows = m.sum(axis=1, keepdims=True)
        ax.imshow(m / np.maximum(rows, 1), vmin=0, vmax=1, cmap="Blues")
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("recognised")
        ax.set_ylabel("declared (first line)")
        ax.set_title(f"{name}: recognised {report['scorers'][name]['recognised_rate']:.0%} of declared")
    fig.tight_layout()
    confusion = out / "swap_confusion.png"
    fig.savefig(confusion)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name in names:
        rows = report["records"]
        t = [r[f"{name}_true"] for r in rows]
        s = [r[f"{name}_swap"] for r in rows]
        fpr, tpr, _ = roc_curve([0] * len(t) + [1] * len(s), t + s)
        verified = report["scorers"][name].get("verified")
        view = ", as written" if verified else ""
        line = ax.plot(fpr, tpr, lw=2, label=f"{name}{view} (AUC {report['scorers'][name]['roc_auc']:.3f})")[0]
        if verified:  # the same scorer without the archive's known clerical errors among the true declarations
            keep = [i for i, r in enumerate(rows) if r.get("known_wrong") is False]
            tv, sv = [t[i] for i in keep], [s[i] for i in keep]
            fpr, tpr, _ = roc_curve([0] * len(tv) + [1] * len(sv), tv + sv)
            ax.plot(
                fpr,
                tpr,
                "--",
                lw=1.5,
                color=line.get_color(),
                label=f"{name}, verified (AUC {verified['roc_auc']:.3f})",
            )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false alarms (true declarations flagged)")
    ax.set_ylabel("swapped declarations detected")
    ax.set_title(f"Swap test, {report['pairs']} scans")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    roc = out / "swap_roc.png"
    fig.savefig(roc)
    plt.close(fig)
    return [confusion, roc]


def write_swap_report(report: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """swap.json (the report without per-scan rows), swap_records.jsonl and the plots, into `out`."""
    from xray.atomic import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_swap(report, out)
    summary = {k: v for k, v in report.items() if k != "records"} | {"plots": [p.name for p in plots]}
    write_atomic(out / "swap.json", json.dumps(summary, indent=2))
    write_atomic(out / "swap_records.jsonl", "".join(json.dumps(r) + "\n" for r in report["records"]))
    return summary


def summary_table(report: dict[str, Any]) -> str:
    """The headline figures, one line per scorer, for the terminal."""
    fas = report["false_alarms"]
    head = f"{'scorer':<12}{'AUC':>7}" + "".join(f"{'det@' + format(fa, 'g') + ' FA':>14}" for fa in fas)
    lines = [f"swap test: {report['pairs']} scans of {report['data']} ({report['split']})", head]

    def row(name: str, m: dict[str, Any]) -> str:
        return f"{name:<12}{m['roc_auc']:>7.3f}" + "".join(f"{detection_at(m, fa):>14.3f}" for fa in fas)

    lines += [row(name, m) for name, m in report["scorers"].items()]
    verified = {n: m["verified"] for n, m in report["scorers"].items() if "verified" in m}
    if verified:
        first = next(iter(verified.values()))
        lines.append(
            f"on the {first['pairs']} verified declarations "
            f"({first['excluded_wrong_declarations']} known wrong declarations left out):"
        )
        lines += [row(name, v) for name, v in verified.items()]
    lines.append(report["conclusion"])
    return "\n".join(lines)
