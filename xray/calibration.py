"""Verdicts on labelled data: calibrate the verifier's thresholds, evaluate scan-level detection.

    xray calibrate --model DIR --data VAL --false-alarm 0.01
    xray evaluate --model DIR --data TEST --verdicts [--out DIR]

Both run the engine and the verifier on every scan of a split whose truth is known
(`truth.jsonl`, or a manifest-vs-contents label per scan), collect the risk, and either
set the red/yellow thresholds to a false-alarm rate (stored in the model card) or
report the mismatch detection rate at those thresholds, ROC AUC and the rate per
scenario kind, with a ROC plot.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from xray.atomic import write_atomic
from xray.domain import FEATURE_OUTPUT, GUARD_TARGET, DomainGuard, calibrate_guard, guard_section, look_group
from xray.engine import Engine
from xray.errors import ConfigError
from xray.goods import GoodsTable, goods_table
from xray.manifest import Manifest
from xray.scan import Scan
from xray.sources.files import read_scan
from xray.verdict import Channel
from xray.verify import MIN_FORMAT_CLEAN, PresenceMap, VerifierConfig, best_scores, calibrate, score_logit, verify


def labelled_scans(root: str | Path, split: str) -> list[dict[str, Any]]:
    """The scans of a split with their files, manifest and truth.

    Raises:
        DatasetError: the folder is not an xray dataset, or the split has no truth.
    """
    from xray.data.format import split_records  # the one reader of the dataset layout

    return [
        {
            "scan_id": r.scan_id,
            "high": r.high,
            "low": r.low,
            "pixel_mm": r.pixel_mm,
            "manifest": r.manifest_path,
            "truth": r.truth,
        }
        for r in split_records(root, split, truth=True)
    ]


def score_split(
    engine: Engine, root: str | Path, split: str, *, limit: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Inspect every scan of a split; one record per scan with its risk, channel and truth.

    Records keep the detections, image-level scores and manifest, so that the verdict
    can be recomputed under other verifier settings without running the model again.
    """
    records = []
    config = VerifierConfig.from_card(engine.card)
    items = labelled_scans(root, split)[:limit]
    for it in tqdm(items, desc=f"inspect {split}", unit="scan", disable=not progress):
        scan = read_scan(it["high"], it["low"], scan_id=it["scan_id"], pixel_mm=it["pixel_mm"])
        manifest = Manifest.load(it["manifest"])
        found = engine.detect(scan)
        t = it["truth"]
        record = {
            "scan_id": it["scan_id"],
            "scenario": t["scenario"],
            "mismatch": bool(t["mismatch"]),
            "undeclared_truth": t.get("undeclared", []),
            "missing_truth": t.get("missing", []),
            "loaded_truth": sorted(set(t.get("loaded", [])) | set(t.get("undeclared", []))),
            "scan_format": found.scan_format,
            "detections": found.detections,
            "image_scores": found.image_scores,
            "found": found,
            "manifest": manifest,
        }
        records.append(rescore(record, config))
    return records


def rescore(record: dict[str, Any], config: VerifierConfig) -> dict[str, Any]:
    """The record with risk, channel and findings under a verifier config."""
    v = verify(record["found"], record["manifest"], config=config)
    return {
        **record,
        "risk": v.risk,
        "channel": v.channel.value,
        "timings_ms": v.timings_ms,
        "findings": [(f.kind.value, f.category) for f in v.findings],
    }


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("detections", "found", "manifest")}


def fit_presence(
    records: list[dict[str, Any]], *, min_positives: int = 10, table: GoodsTable | None = None
) -> dict[str, PresenceMap]:
    """Fit each category's presence map (logistic regression of "loaded" on the logits of
    its best box score and image-level score) on scored records with `loaded_truth`.

    Categories loaded in fewer than `min_positives` scans (or in all but that many) keep
    the uncalibrated rule.
    """
    from sklearn.linear_model import LogisticRegression

    table = table or goods_table(None)
    best = [best_scores(r["detections"], table) for r in records]
    maps = {}
    for c in table.keys:
        X = np.array(
            [[score_logit(b[c]), score_logit(float(r["image_scores"].get(c, 0.0)))] for b, r in zip(best, records)]
        )
        y = np.array([c in r["loaded_truth"] for r in records])
        if min(y.sum(), (~y).sum()) < min_positives:
            continue
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
        maps[c] = PresenceMap(bias=float(lr.intercept_[0]), box=float(lr.coef_[0][0]), image=float(lr.coef_[0][1]))
    return maps


def cross_fitted_risks(
    records: list[dict[str, Any]], base: VerifierConfig, *, folds: int = 2, seed: int = 0
) -> list[float]:
    """Each record's risk under presence maps fitted on the other folds: an honest estimate
    of how the maps fitted on all records will do on new scans."""
    order = np.random.default_rng(seed).permutation(len(records))
    risks = [0.0] * len(records)
    for k in range(folds):
        held = set(order[k::folds].tolist())
        maps = fit_presence([r for i, r in enumerate(records) if i not in held], table=goods_table(base.goods_table))
        cfg = base.model_copy(update={"presence": maps})
        for i in held:
            risks[i] = rescore(records[i], cfg)["risk"]
    return risks


def calibrate_model(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    false_alarm: float = 0.01,
    review_rate: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    image_weights: tuple[float, ...] = (0.0, 0.5, 1.0),
    flip: bool = False,
) -> dict:
    """Calibrate the verifier of a model on a split and store the thresholds in its card.

    The evidence rule is chosen by ROC AUC on the split: the best box score with the
    image-level score weighted by one of `image_weights`, or per-category presence maps
    fitted on the split (their AUC measured by 2-fold cross-fitting, so that the choice
    is not won in-sample). Ties go to the simpler rule. The red threshold is then set to
    the false-alarm rate (on the cross-fitted risks when presence maps win). With `flip`
    the engine averages each scan with its mirror image (`xray.engine.fuse_mirror`); the
    card records it, so that every later engine on the model does the same.
    """
    from sklearn.metrics import roc_auc_score

    engine = Engine(model_dir, flip=flip)
    records = score_split(engine, data, split, limit=limit, progress=progress)
    labels = [r["mismatch"] for r in records]
    verifier = VerifierConfig.from_card(engine.card)
    plain = verifier.model_copy(update={"presence": {}})
    aucs: dict[str, float] = {}
    candidates: dict[str, tuple[VerifierConfig, list[float]]] = {}
    if 0 < sum(labels) < len(labels):
        for w in image_weights:
            cfg_w = plain.model_copy(update={"image_weight": w})
            candidates[f"image_weight={w}"] = (cfg_w, [rescore(r, cfg_w)["risk"] for r in records])
        maps = (
            fit_presence(records, table=goods_table(verifier.goods_table))
            if all("loaded_truth" in r for r in records)
            else {}
        )
        if maps:
            candidates["presence"] = (plain.model_copy(update={"presence": maps}), cross_fitted_risks(records, plain))
        aucs = {k: float(roc_auc_score(labels, risks)) for k, (_, risks) in candidates.items()}
        rule = max(aucs, key=lambda k: (round(aucs[k], 4), -list(candidates).index(k)))
        base, risks = candidates[rule]
    else:
        rule, base = "config", verifier
        risks = [rescore(r, base)["risk"] for r in records]
    formats = [r["scan_format"] for r in records]
    cfg = calibrate(risks, labels, false_alarm=false_alarm, review_rate=review_rate, base=base, formats=formats)
    red = sent_to_red(records, cfg, risks)
    clean = [f for f, m in zip(red, labels) if not m]
    bad = [f for f, m in zip(red, labels) if m]
    result = {
        "data": str(data),
        "split": split,
        "scans": len(records),
        "mismatches": len(bad),
        "flip": flip,
        "evidence_rule": rule,
        "image_weight": base.image_weight,
        "roc_auc_by_rule": aucs,
        "false_alarm_target": false_alarm,
        "false_alarm": float(np.mean(clean)),
        "detection_rate": float(np.mean(bad)) if bad else None,
        "red": cfg.red,
        "yellow": cfg.yellow,
        "min_format_clean": MIN_FORMAT_CLEAN,
        "by_format": format_report(records, cfg, risks=risks),
    }
    card_path = Path(model_dir) / "model.json"
    card = json.loads(card_path.read_text())
    card["verifier"] = cfg.model_dump()
    card["engine"] = {**(card.get("engine") or {}), "flip": flip}
    card["calibration"] = result
    card_path.write_text(json.dumps(card, indent=2))
    return result


def sent_to_red(records: list[dict[str, Any]], config: VerifierConfig, risks: list[float] | None = None) -> np.ndarray:
    """Whether each record's risk reaches the red threshold of its scan format."""
    risks = [r["risk"] for r in records] if risks is None else risks
    return np.array([k >= config.for_format(r.get("scan_format", "")).red for r, k in zip(records, risks)], bool)


def format_report(
    records: list[dict[str, Any]], config: VerifierConfig, *, risks: list[float] | None = None
) -> dict[str, Any]:
    """Per scan format: scans, mismatches, the red threshold that judged them (their own or the
    pooled one), detection and false-alarm rates."""
    flagged = sent_to_red(records, config, risks)
    out: dict[str, Any] = {}
    for f in sorted({r.get("scan_format", "") for r in records}):
        mine = [i for i, r in enumerate(records) if r.get("scan_format", "") == f]
        y = np.array([records[i]["mismatch"] for i in mine], bool)
        hit = flagged[mine]
        out[f or "unknown"] = {
            "scans": len(mine),
            "mismatches": int(y.sum()),
            "red": config.for_format(f).red,
            "own_thresholds": f in config.by_format,
            "detection_rate": float(hit[y].mean()) if y.any() else None,
            "false_alarm_rate": float(hit[~y].mean()) if (~y).any() else None,
        }
    return out


def verdict_report(records: list[dict[str, Any]], *, config: VerifierConfig) -> dict[str, Any]:
    """Scan-level figures: detection and false-alarm rates at the red thresholds (each scan its
    format's), ROC AUC, rates per scenario kind and per scan format."""
    from sklearn.metrics import roc_auc_score

    y = np.array([r["mismatch"] for r in records])
    risk = np.array([r["risk"] for r in records])
    flagged = sent_to_red(records, config)
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for r, f in zip(records, flagged):
        per_kind[r["scenario"]].append(bool(f))
    concealed = [
        (r, f)
        for r, f in zip(records, flagged)
        if r["scenario"] == "concealment" and "tobacco" in r["undeclared_truth"]
    ]
    return {
        "scans": len(records),
        "mismatches": int(y.sum()),
        "red_threshold": config.red,
        "detection_rate": float(flagged[y].mean()) if y.any() else None,
        "false_alarm_rate": float(flagged[~y].mean()) if (~y).any() else None,
        "roc_auc": float(roc_auc_score(y, risk)) if 0 < y.sum() < len(y) else None,
        # flagged per scenario kind: detection rate for mismatches, false-alarm rate for clean and empty
        "flagged_by_scenario": {
            k: {"scans": len(v), "flagged": float(np.mean(v))} for k, v in sorted(per_kind.items())
        },
        "concealed_cigarettes": {
            "scans": len(concealed),
            "detected": float(np.mean([f for _, f in concealed])) if concealed else None,
            "named_tobacco": float(
                np.mean([f and ("undeclared", "tobacco") in map(tuple, r["findings"]) for r, f in concealed])
            )
            if concealed
            else None,
        },
        "channels": {c.value: int(sum(r["channel"] == c.value for r in records)) for c in Channel},
        "by_format": format_report(records, config),
    }


def roc_plot(records: list[dict[str, Any]], path: str | Path, *, config: VerifierConfig) -> None:
    """ROC curve of the scan-level risk, with the operating point of the red thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    y = np.array([r["mismatch"] for r in records])
    risk = np.array([r["risk"] for r in records])
    fpr, tpr, _ = roc_curve(y, risk)
    flagged = sent_to_red(records, config)
    own = f", {len(config.by_format)} formats their own" if config.by_format else ""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot(fpr, tpr, lw=2, label="verifier risk")
    ax.plot(
        [flagged[~y].mean()],
        [flagged[y].mean()],
        "o",
        color="crimson",
        label=f"red channel (risk >= {config.red:.3f}{own})",
    )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false-alarm rate (matching manifests sent to red)")
    ax.set_ylabel("mismatch detection rate")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
    ax.set_title(f"Scan-level mismatch detection ({len(records)} scans)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_verdicts(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    out: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the verdict evaluation of a model on a split; write report JSON and ROC plot into `out`."""
    engine = Engine(model_dir)
    verifier = VerifierConfig.from_card(engine.card)
    records = score_split(engine, data, split, limit=limit, progress=progress)
    report = {
        "model": engine.model_id,
        "data": str(data),
        "split": split,
        **verdict_report(records, config=verifier),
        "calibrated_false_alarm": verifier.false_alarm_rate,
    }
    totals = [r["timings_ms"]["total"] for r in records]
    report["engine_ms"] = {"p50": float(np.percentile(totals, 50)), "p99": float(np.percentile(totals, 99))}
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "verdicts.json").write_text(json.dumps(report, indent=2))
        (out / "verdict_records.jsonl").write_text("\n".join(json.dumps(_public(r)) for r in records) + "\n")
        roc_plot(records, out / "roc.png", config=verifier)
    return report


# The risk rules `calibrate --swap` chooses among on the site's validation split (most swaps
# detected at the false-alarm target, then ROC AUC): how the verifier's terms combine, and
# whether a declaration of several categories needs each or any of them seen (an archive model
# often misses a declaration's second, smaller line, which "each" turns into a false alarm).
SWAP_RULES: list[dict[str, Any]] = [
    {"combine": c, "declared_rule": d} for c in ("max", "noisy_or") for d in ("each", "any")
]


def _rule_name(rule: dict[str, Any]) -> str:
    return "+".join(str(v) for v in rule.values())


def calibrate_swap(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    false_alarm: float = 0.01,
    review_rate: float | None = None,
    limit: int | None = None,
    seed: int = 0,
    reference: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Calibrate a model's verifier on a site's archive without inspection outcomes, and store it in its card.

    The same rule as `calibrate_model` (red at the false-alarm rate on matching scans), where
    the matching scans are the split's true declarations and the mismatches the swap test's
    swapped ones (`xray.swap`): an archive of cleared scans has no other labels.
    """
    from xray.reference import ReferenceIndex, embedding_engine
    from xray.swap import ModelScorer, detection_at, swap_metrics, swap_test

    index = ReferenceIndex.load(reference) if reference else None
    engine = Engine(model_dir)
    card_cfg = VerifierConfig.from_card(engine.card)
    detector = embedding_engine(engine, index.embedding) if index else engine
    seen: dict[str, Any] = {}
    scorers = [
        ModelScorer(detector, card_cfg.model_copy(update=rule), index, name=_rule_name(rule), seen=seen)
        for rule in SWAP_RULES
    ]
    report = swap_test(
        scorers, data, split=split, seed=seed, limit=limit, false_alarms=(false_alarm,), progress=progress
    )
    rows = report["records"]
    by_rule = report["scorers"]

    def merit(name: str) -> tuple[float, float]:
        m = by_rule[name]
        return detection_at(m, false_alarm), m["roc_auc"] or 0.0

    chosen = max((s.name for s in scorers), key=merit)
    base = next(s.config for s in scorers if s.name == chosen)
    true_risk, swap_risk = [r[f"{chosen}_true"] for r in rows], [r[f"{chosen}_swap"] for r in rows]
    cfg = calibrate(
        true_risk + swap_risk,
        [False] * len(true_risk) + [True] * len(swap_risk),
        false_alarm=false_alarm,
        review_rate=review_rate,
        base=base,
    )
    measured = swap_metrics(true_risk, swap_risk, false_alarms=(false_alarm,))
    result = {
        "data": str(data),
        "split": split,
        "rule": "swap",
        "risk_rule": chosen,
        "risk_rules": {
            name: {"roc_auc": m["roc_auc"], "detection_rate": detection_at(m, false_alarm)}
            for name, m in by_rule.items()
        },
        "pairs": len(rows),
        "seed": seed,
        "reference": str(reference) if reference else None,
        "false_alarm_target": false_alarm,
        "false_alarm": float(np.mean([r >= cfg.red for r in true_risk])),
        "detection_rate": float(np.mean([r >= cfg.red for r in swap_risk])),
        "roc_auc": measured["roc_auc"],
        "red": cfg.red,
        "yellow": cfg.yellow,
    }
    card_path = Path(model_dir) / "model.json"
    card = json.loads(card_path.read_text())
    card["verifier"] = cfg.model_dump()
    card["calibration"] = result
    from xray.atomic import write_atomic

    write_atomic(card_path, json.dumps(card, indent=2))
    return result


# -- the out-of-domain guard -----------------------------------------------------------------


def split_scans(root: str | Path, split: str, *, limit: int | None = None) -> Iterator[Scan]:
    """The scans of a split, read one at a time as the engine would get them (no truth needed)."""
    from xray.data.format import split_records

    for r in split_records(root, split)[:limit]:
        yield read_scan(r.high, r.low, scan_id=r.scan_id, pixel_mm=r.pixel_mm)


def guard_measures(
    engine: Engine, scans: Iterable[Scan], *, progress: bool = False, desc: str = "measure"
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The guard's measures (input statistics, grey-level profile, pooled features) of each
    scan's whole-scan pass, and each scan's format (`look_group`)."""
    guard = DomainGuard({}, mode=engine.spec.mode)  # no references: every measure, whatever the card holds
    out, groups = [], []
    for scan in tqdm(scans, desc=desc, unit="scan", disable=not progress):
        whole = engine.model_inputs(scan)[0]
        run = engine._run(whole.x)
        out.append(guard.measures(whole.x, whole.lb.resized_hw, scan, run.get(FEATURE_OUTPUT)))
        groups.append(look_group(scan))
    return out, groups


def flag_rate(engine: Engine, scans: Iterable[Scan], *, progress: bool = False, desc: str = "guard") -> dict[str, Any]:
    """The share of scans the engine's guard flags as out of domain, and why."""
    checks = []
    for scan in tqdm(scans, desc=desc, unit="scan", disable=not progress):
        whole = engine.model_inputs(scan)[0]
        d = engine.domain_check(whole, engine._run(whole.x), scan)
        checks.append(d)
    flagged = [c is not None and not c.in_domain for c in checks]
    reasons: dict[str, int] = defaultdict(int)
    for c in checks:
        if c is not None and not c.in_domain:
            for r in c.reason.split("; "):
                reasons[r] += 1
    return {"scans": len(checks), "flagged": float(np.mean(flagged)) if checks else None, "reasons": dict(reasons)}


def install_feature_output(model_dir: str | Path, probe: list[Scan]) -> dict[str, Any]:
    """Give a model folder's ONNX the pooled-feature output (`xray.domain.add_feature_output`)
    if it lacks one, after checking on `probe` scans that the other outputs stay bit-identical;
    the card's file hash, size and output names follow."""
    import hashlib
    import tempfile

    from xray.domain import add_feature_output, feature_parity

    model_dir = Path(model_dir)
    onnx_path, card_path = model_dir / "model.onnx", model_dir / "model.json"
    engine = Engine(model_dir)
    if FEATURE_OUTPUT in engine.output_names:
        return {"added": False}
    with tempfile.TemporaryDirectory() as tmp:
        extended = Path(tmp) / "model.onnx"
        tensor = add_feature_output(onnx_path, extended)
        inputs = [p.x for s in probe for p in engine.model_inputs(s)[:1]]
        parity = feature_parity(onnx_path, extended, inputs)
        if not parity["bit_identical"]:
            raise ConfigError(f"{onnx_path}: adding the feature output changed the other outputs; left as it was")
        blob = extended.read_bytes()
    write_atomic(onnx_path, blob)
    card = json.loads(card_path.read_text())
    card["sha256"], card["size_bytes"] = hashlib.sha256(blob).hexdigest(), len(blob)
    card["outputs"]["names"] = [*card["outputs"]["names"], FEATURE_OUTPUT]
    card["outputs"][FEATURE_OUTPUT] = f"(1, D) pooled input of the image-level head ({tensor}), for the domain guard"
    card["export"] = {**(card.get("export") or {}), "feature_output": {"tensor": tensor, "parity": parity}}
    write_atomic(card_path, json.dumps(card, indent=2))
    return {"added": True, "tensor": tensor, "parity": parity}


def calibrate_domain(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    target: float = GUARD_TARGET,
    limit: int | None = None,
    progress: bool = True,
    measure: dict[str, tuple[str | Path, str]] | None = None,
    foreign: bool = True,
) -> dict[str, Any]:
    """Calibrate a model's out-of-domain guard on in-domain validation scans and store it in the card.

    Adds the pooled-feature output to the ONNX first when it has none (other outputs
    checked bit-identical). Then measures the flagged share of each `measure` set
    (name -> (dataset, split)) and, with `foreign`, of images that are not cargo scans
    (`xray.foreign`); the figures go into the card with the guard.
    """
    install_feature_output(model_dir, list(split_scans(data, split, limit=8)))
    engine = Engine(model_dir)
    vectors, groups = guard_measures(
        engine, split_scans(data, split, limit=limit), progress=progress, desc=f"guard {split}"
    )
    guard, summary = calibrate_guard(vectors, groups=groups, target=target, mode=engine.spec.mode)
    from xray.train.metrics import dataset_info

    summary = {**summary, "data": dataset_info(Path(data)), "split": split}
    card_path = Path(model_dir) / "model.json"
    card = json.loads(card_path.read_text())
    card["domain"] = guard_section(guard, summary)
    write_atomic(card_path, json.dumps(card, indent=2))
    engine = Engine(model_dir)
    measured: dict[str, Any] = {}
    for name, (root, sp) in (measure or {}).items():
        measured[name] = {
            "data": str(root),
            "split": sp,
            **flag_rate(engine, split_scans(root, sp), progress=progress, desc=name),
        }
    if foreign:
        from xray.foreign import foreign_images

        kinds = foreign_images()
        per_kind = {k: flag_rate(engine, v) for k, v in kinds.items()}
        flagged = sum((r["flagged"] or 0.0) * r["scans"] for r in per_kind.values())
        total = sum(r["scans"] for r in per_kind.values())
        measured["non_cargo"] = {"scans": total, "flagged": flagged / total if total else None, "by_kind": per_kind}
    card = json.loads(card_path.read_text())
    card["domain"]["measured"] = measured
    write_atomic(card_path, json.dumps(card, indent=2))
    return {"calibration": summary, "measured": measured}
