"""The verifier: detections + manifest -> a customs `Verdict` with findings, risk and channel.

Evidence per goods category is the probability that the goods are loaded, from a
per-category logistic map of its best box score and image-level score fitted on labelled
validation scans (`PresenceMap`, written by `xray calibrate`); without a map, the best
box score, or the weighted image-level score when that is higher. Risk is
continuous in the evidence, so it can be calibrated to a false-alarm rate. Each
category that no declared line explains (a compatible category explains it too) is a
term w_c * evidence_c, with w_c growing with the category's risk weight (tobacco,
firearms); each declared line is a term w_missing * (1 - evidence of the best
compatible category). The risk is the largest term (`combine="max"`), or their
noisy-OR. The max is the default: measured on the simulator's validation split, the
noisy-OR lets low-score noise from many categories add up in clean scans (ROC AUC
0.945 vs 0.954, and half the detection rate at 2 % false alarms). Findings name what
drives the risk, with their evidence boxes. The thresholds may differ per scan format (kind and
bit depth: one scanner's 8-bit exports against another's 16-bit pairs), each calibrated on that
format's validation scans (`calibrate(formats=...)`). With a per-site reference index
(`xray.reference`) and a scan embedding, each declared code whose heading has references
is one more term, w_reference * (how unlike its references the scan is).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from xray.detection import Detection, Detections
from xray.errors import ConfigError
from xray.goods import GoodsTable, goods_table
from xray.manifest import Manifest
from xray.scan import Scan
from xray.verdict import Box, Channel, Finding, FindingKind, GoodsEvidence, Outcome, Verdict, stage_timings

SCORE_FLOOR = 0.01  # a category with no box (the graph returns none under 0.05) scores this
# Matching validation scans a format needs for thresholds of its own: at 2 % false alarms, 200
# allow 4, which is about as coarse as a threshold can be and still be a rate.
MIN_FORMAT_CLEAN = 200
# Evidence boxes of one category drawn for the officer: a weaker box overlapping a stronger one
# by more than this IoU shows the same region again and is left out of the picture (not the risk).
EVIDENCE_IOU = 0.3


def score_logit(p: float) -> float:
    p = min(max(p, SCORE_FLOOR), 1.0 - SCORE_FLOOR)
    return float(np.log(p / (1.0 - p)))


class PresenceMap(BaseModel):
    """One category's calibrated evidence: P(loaded) = sigmoid(bias + box * logit(b) + image * logit(i)),
    with b its best box score and i its image-level score (both floored at `SCORE_FLOOR`).

    Fitted by logistic regression on a labelled validation split (`xray calibrate`), so
    that evidence means the same across categories: a noisy category's 0.4 and a
    reliable one's 0.4 are not the same probability that the goods are there.
    """

    bias: float
    box: float
    image: float = 0.0

    def __call__(self, box_score: float, image_score: float) -> float:
        z = self.bias + self.box * score_logit(box_score) + self.image * score_logit(image_score)
        return float(1.0 / (1.0 + np.exp(-z)))


class FormatThresholds(BaseModel):
    """The review and red thresholds of one scan format (`Detections.scan_format`), calibrated on
    that format's validation scans: each scanner's exports hold their own false-alarm rate."""

    yellow: float = Field(ge=0.0, le=1.0)
    red: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> FormatThresholds:
        if self.yellow > self.red:
            raise ValueError(f"yellow threshold {self.yellow} must not exceed red threshold {self.red}")
        return self


class VerifierConfig(BaseModel):
    """Thresholds of the verifier; calibrated on validation data and stored in the model card.

    Attributes:
        present: Evidence at which a category counts as seen (a finding is reported).
        yellow: Risk from which a scan goes to document / operator review.
        red: Risk from which a scan goes to physical inspection (a mismatch verdict).
        missing_weight: Weight of a declared line with no evidence.
        image_weight: Weight of the model's image-level presence score as evidence
            beside its boxes (0: boxes only); chosen on validation data.
        combine: How the terms become one risk: the largest, or their noisy-OR.
        declared_rule: When a declaration of several categories has no evidence: "each" (every
            declared category not seen is a risk term), or "any" (one term, its best-seen
            category's: the declaration is explained when any of its goods is seen). Findings
            name each category not seen either way.
        presence: Calibrated evidence per category (replaces the box/image rule for
            the categories it names).
        false_alarm_rate: The rate `red` was calibrated to (None if not calibrated).
        reference_weight: Weight of a declared code unlike its references (used only when
            the verifier is given a reference index and the scan an embedding).
        goods_table: The table the model's classes and the declarations' HS codes map to
            (`xray.goods.goods_table`: "cargo", "parcel" or a path); the model card's.
        by_format: Thresholds per scan format, where calibration had enough of its scans; other
            formats use `yellow` and `red`.
    """

    present: float = Field(default=0.5, ge=0.0, le=1.0)
    yellow: float = Field(default=0.3, ge=0.0, le=1.0)
    red: float = Field(default=0.5, ge=0.0, le=1.0)
    missing_weight: float = Field(default=0.7, ge=0.0, le=1.0)
    image_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    combine: Literal["max", "noisy_or"] = "max"
    declared_rule: Literal["each", "any"] = "each"
    presence: dict[str, PresenceMap] = Field(default_factory=dict)
    false_alarm_rate: float | None = None
    reference_weight: float = Field(default=0.7, ge=0.0, le=1.0)
    goods_table: str = "cargo"
    by_format: dict[str, FormatThresholds] = Field(default_factory=dict)

    def for_format(self, scan_format: str) -> VerifierConfig:
        """The config that judges scans of `scan_format`: its own thresholds when calibrated."""
        own = self.by_format.get(scan_format)
        return self if own is None else self.model_copy(update={"yellow": own.yellow, "red": own.red})

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> VerifierConfig:
        """The thresholds stored in a model card (the defaults where it has none).

        Raises:
            ConfigError: the card's verifier section is malformed.
        """
        try:
            return cls.model_validate(
                {"goods_table": card.get("goods_table") or "cargo", **(card.get("verifier") or {})}
            )
        except ValidationError as e:
            raise ConfigError(f"malformed verifier thresholds in the model card: {e}") from e

    @model_validator(mode="after")
    def _ordered(self) -> VerifierConfig:
        if self.yellow > self.red:
            raise ValueError(f"yellow threshold {self.yellow} must not exceed red threshold {self.red}")
        return self


def category_weight(table: GoodsTable, category: str) -> float:
    """How much an undeclared category weighs in the risk: 0.5 to 1 by its risk weight."""
    return 0.5 + 0.5 * table[category].risk


def evidence(
    detections: Iterable[Detection],
    table: GoodsTable,
    image_scores: dict[str, float] | None = None,
    image_weight: float = 0.0,
    presence: dict[str, PresenceMap] | None = None,
) -> dict[str, float]:
    """Evidence per goods category in [0, 1]: its calibrated presence map where there is one,
    else its best box score, or the weighted image-level score when that is higher
    (categories the table does not know are ignored)."""
    best = best_scores(detections, table)
    image = {k: float(v) for k, v in (image_scores or {}).items() if k in best}
    ev = {}
    for k in table.keys:
        if presence and k in presence:
            ev[k] = presence[k](best[k], image.get(k, 0.0))
        else:
            ev[k] = max(best[k], image_weight * image.get(k, 0.0))
    return ev


def best_scores(detections: Iterable[Detection], table: GoodsTable) -> dict[str, float]:
    """The best box score per goods category (0 where there is no box)."""
    best = {k: 0.0 for k in table.keys}
    for d in detections:
        if d.category in best and d.score > best[d.category]:
            best[d.category] = d.score
    return best


def _distinct(detections: list[Detection]) -> list[Box]:
    """The boxes of one category, strongest first, without those that largely overlap a stronger
    one (OpenCV's NMS at `EVIDENCE_IOU`): the model's NMS leaves overlapping weak boxes of one
    region, which drawn together read as many objects."""
    ranked = sorted(detections, key=lambda d: -d.score)
    if not ranked:
        return []
    rects = [[d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]] for d in ranked]
    keep = cv2.dnn.NMSBoxes(rects, [d.score for d in ranked], 0.0, EVIDENCE_IOU)
    return [ranked[i].box for i in sorted(int(k) for k in np.asarray(keep).reshape(-1))]


def _evidence_boxes(detections: list[Detection], floor: float) -> list[Box]:
    """A category's distinct boxes scoring `floor` or more; when none does (evidence carried by
    the image-level head alone), its best box, so that the officer is shown where the model looked."""
    strong = [d for d in detections if d.score >= floor]
    if strong or not detections:
        return _distinct(strong)
    return [max(detections, key=lambda d: d.score).box]


def _goods(
    ev: dict[str, float],
    best: dict[str, float],
    by_category: dict[str, list[Detection]],
    declared: list[str],
    table: GoodsTable,
    present: float,
) -> list[GoodsEvidence]:
    """The declared-vs-found table: declared categories, then every other category with half the
    presence threshold of evidence or more, strongest first; each with its boxes that reach the
    threshold (those the evidence picture draws)."""
    boxes = {k: _distinct([d for d in ds if d.score >= present]) for k, ds in by_category.items()}
    shown = list(declared) + sorted(
        (c for c in table.keys if c not in declared and ev[c] >= present / 2), key=lambda c: -ev[c]
    )
    return [
        GoodsEvidence(
            category=c,
            name=table[c].name if c in table.keys else c,
            declared=c in declared,
            seen=ev.get(c, 0.0) >= present,
            evidence=round(ev.get(c, 0.0), 4),
            threshold=present,
            best_score=round(best.get(c, 0.0), 4),
            boxes=boxes.get(c, []),
        )
        for c in shown
    ]


def _findings(
    ev: dict[str, float],
    boxes: dict[str, list[Box]],
    declared: list[str],
    unexplained: dict[str, float],
    not_seen: dict[str, float],
    terms: dict[tuple[FindingKind, str], float],
    risk: float,
    table: GoodsTable,
    config: VerifierConfig,
) -> list[Finding]:
    """What drives the risk, named: the mismatch kinds of the categories past the presence threshold,
    or, for a scan sent to review with none past it, the strongest risk term."""
    findings: list[Finding] = []
    seen = [c for c in table.keys if ev[c] >= config.present]
    undeclared_seen = [c for c in seen if c in unexplained]
    missing = [d for d, m in not_seen.items() if m > 1.0 - config.present]
    if not declared and undeclared_seen:
        findings += [
            Finding(
                kind=FindingKind.FALSE_EMPTY,
                category=c,
                confidence=ev[c],
                evidence=boxes[c],
                detail=f"declared empty, {table[c].name.lower()} seen",
            )
            for c in undeclared_seen
        ]
    elif declared and not seen:
        findings.append(
            Finding(
                kind=FindingKind.EMPTY,
                confidence=min(not_seen.values()),
                detail=f"declared {', '.join(declared)}, no goods seen",
            )
        )
    elif missing and undeclared_seen and len(missing) == len(declared):
        # Nothing declared is there and something else is: a substitution.
        findings += [
            Finding(
                kind=FindingKind.SUBSTITUTION,
                category=c,
                confidence=min(ev[c], max(not_seen.values())),
                evidence=boxes[c],
                detail=f"declared {', '.join(declared)}, loaded {c}",
            )
            for c in undeclared_seen
        ]
    else:
        findings += [
            Finding(
                kind=FindingKind.UNDECLARED,
                category=c,
                confidence=ev[c],
                evidence=boxes[c],
                detail=f"{table[c].name.lower()} seen, not declared",
            )
            for c in undeclared_seen
        ]
        findings += [
            Finding(kind=FindingKind.NOT_SEEN, category=d, confidence=not_seen[d], detail=f"declared {d}, not seen")
            for d in missing
        ]
    if risk >= config.yellow and not findings and terms:
        # Review or inspection, with nothing past the presence threshold: name what drives the risk.
        kind, c = max(terms, key=lambda k: terms[k])
        if kind is FindingKind.UNDECLARED:
            findings.append(
                Finding(
                    kind=kind,
                    category=c,
                    confidence=ev[c],
                    evidence=boxes[c],
                    detail=f"{table[c].name.lower()} suspected, not declared (weak evidence)",
                )
            )
        else:
            findings.append(
                Finding(kind=kind, category=c, confidence=not_seen[c], detail=f"declared {c}, weak evidence of it")
            )
    return findings


class ReferenceScorer(Protocol):
    """What verifying by reference needs of `xray.reference.ReferenceIndex`."""

    def score(self, embedding: Sequence[float], hs_code: str) -> float | None: ...


def reference_terms(
    found: Detections, manifest: Manifest | None, reference: ReferenceScorer | None, weight: float
) -> dict[str, float]:
    """Per declared HS code with references: weight * how unlike its references the scan is."""
    if reference is None or manifest is None or found.embedding is None:
        return {}
    scores = {line.hs_code: reference.score(found.embedding, line.hs_code) for line in manifest.lines}
    return {code: weight * s for code, s in scores.items() if s is not None}


def verify(
    found: Detections,
    manifest: Manifest | None,
    *,
    config: VerifierConfig | None = None,
    table: GoodsTable | None = None,
    decode_ms: float | None = None,
    reference: ReferenceScorer | None = None,
) -> Verdict:
    """Compare what the scan shows with what the manifest declares: the verdict, built once.

    The image-level presence scores in `found` count as evidence with the config's
    `image_weight`. Two cases have nothing to weigh the risk against, and go to operator
    review (inconclusive, yellow, at the risk where yellow starts) with the reason as a
    finding: no manifest (`manifest` None: detections only), and a scan the engine
    measured as out of the model's domain — never red on a scan the model cannot read.
    One measurement overrides the guard: goods declared, a hold the engine measured empty
    from its attenuation (`found.hold`, `xray.hold`) and no goods seen by the model is red
    at risk 1, an empty finding.

    Args:
        decode_ms: Time it took to decode the scan, recorded with the other stages.
        reference: A per-site reference index: declared codes unlike their references
            add to the risk (`reference_terms`).
    """
    t0 = time.perf_counter()
    config = (config or VerifierConfig()).for_format(found.scan_format)
    table = table or goods_table(config.goods_table)
    detections = found.detections
    declared, unknown = manifest.categories(table) if manifest is not None else ([], [])
    ev = evidence(detections, table, found.image_scores, config.image_weight, config.presence)
    best = best_scores(detections, table)
    by_category: dict[str, list[Detection]] = {k: [] for k in table.keys}
    for d in detections:
        if d.category in by_category:
            by_category[d.category].append(d)
    boxes = {k: _evidence_boxes(ds, config.present * 0.5) for k, ds in by_category.items()}

    unexplained = {c: ev[c] for c in table.keys if not any(table.compatible(c, d) for d in declared)}
    not_seen = {d: 1.0 - max(ev[c] for c in table.keys if table.compatible(c, d)) for d in declared}
    # The risk terms, keyed by what drives them (undeclared ones first: they win ties).
    terms = {(FindingKind.UNDECLARED, c): category_weight(table, c) * e for c, e in unexplained.items()}
    missing_terms = not_seen
    if config.declared_rule == "any" and not_seen:
        best_seen = min(not_seen, key=lambda d: not_seen[d])
        missing_terms = {best_seen: not_seen[best_seen]}
    terms |= {(FindingKind.NOT_SEEN, d): config.missing_weight * m for d, m in missing_terms.items()}
    by_reference = reference_terms(found, manifest, reference, config.reference_weight)
    values = [*terms.values(), *by_reference.values()]
    if config.combine == "max":
        risk = max(values, default=0.0)
    else:
        risk = 1.0 - float(np.prod([1.0 - t for t in values]))
    risk = min(max(risk, 0.0), 1.0)

    findings: list[Finding] = []
    out_of_domain = found.domain is not None and not found.domain.in_domain
    if out_of_domain:
        assert found.domain is not None
        findings.append(
            Finding(
                kind=FindingKind.OUT_OF_DOMAIN,
                confidence=1.0,
                detail=found.domain.reason or "the scan is unlike those the model was trained on",
            )
        )
    if manifest is None:
        findings.append(
            Finding(kind=FindingKind.NO_MANIFEST, confidence=1.0, detail="no manifest to compare with: detections only")
        )
    else:
        findings += _findings(ev, boxes, declared, unexplained, not_seen, terms, risk, table, config)
        findings += [
            Finding(
                kind=FindingKind.UNLIKE_REFERENCES,
                category=table.category_of(code),
                confidence=t / max(config.reference_weight, 1e-9),
                detail=f"declared HS {code} is unlike the site's references of it",
            )
            for code, t in by_reference.items()
            if t >= config.yellow
        ]
    findings += [
        Finding(kind=FindingKind.UNKNOWN_HS, confidence=1.0, detail=f"HS code {code} maps to no goods category")
        for code in unknown
    ]

    # Goods declared, a hold empty by its attenuation (`xray.hold`) and no goods seen by the model: an
    # empty container, whatever the guard says. Where the model sees goods (declared or not) the
    # two disagree; the measurement is blind to a thin layer on the floor or a narrow item, so it
    # does not overrule the model, and the guard decides as for any other scan.
    goods = _goods(ev, best, by_category, declared, table, config.present)
    empty_hold = (
        manifest is not None
        and not manifest.declared_empty
        and found.hold is not None
        and found.hold.empty
        and not any(g.seen for g in goods)
    )
    if empty_hold:
        assert manifest is not None and found.hold is not None
        # With no goods seen, the model's goods findings are weak suspicions and "not seen" / "empty".
        findings = [
            f for f in findings if f.kind not in (FindingKind.UNDECLARED, FindingKind.NOT_SEEN, FindingKind.EMPTY)
        ]
        named = ", ".join(declared or [line.hs_code for line in manifest.lines])
        findings.insert(
            int(out_of_domain),
            Finding(
                kind=FindingKind.EMPTY,
                confidence=1.0,
                detail=f"declared {named}, the hold is empty by its attenuation "
                f"(load {found.hold.load:.2f}, walls and floor seen) and no goods are seen",
            ),
        )
        outcome, channel, risk = Outcome.MISMATCH, Channel.RED, 1.0
    elif manifest is None or out_of_domain:
        outcome, channel, risk = Outcome.INCONCLUSIVE, Channel.YELLOW, config.yellow
    elif risk >= config.red:
        outcome, channel = Outcome.MISMATCH, Channel.RED
    elif risk >= config.yellow or unknown:
        outcome, channel = Outcome.INCONCLUSIVE, Channel.YELLOW
    else:
        outcome, channel = Outcome.MATCH, Channel.GREEN
    stages = {**found.timings_ms, "verify": (time.perf_counter() - t0) * 1e3}
    if decode_ms is not None:
        stages["decode"] = decode_ms
    return Verdict(
        scan_id=found.scan_id,
        verdict=outcome,
        channel=channel,
        risk=risk,
        findings=findings,
        detections=list(detections),
        declared=declared,
        image_scores=dict(found.image_scores),
        goods=goods,
        domain=found.domain,
        hold=found.hold,
        model_id=found.model_id,
        model_version=found.model_version,
        timings_ms=stage_timings(stages),
    )


class Detector(Protocol):
    """What inspecting needs of `xray.engine.Engine`: its model card and `detect`."""

    card: dict[str, Any]

    def detect(self, scan: Scan) -> Detections: ...


class Inspector:
    """Scan + manifest -> `Verdict`: the engine's detections, verified under the model's thresholds.

    Args:
        engine: Detects goods (an `xray.engine.Engine`).
        config: Verifier thresholds (default: those calibrated into the engine's model card).
    """

    def __init__(
        self, engine: Detector, config: VerifierConfig | None = None, reference: ReferenceScorer | None = None
    ):
        self.engine = engine
        self.config = config if config is not None else VerifierConfig.from_card(engine.card)
        self.reference = reference

    def inspect(self, scan: Scan, manifest: Manifest | None, *, decode_ms: float | None = None) -> Verdict:
        """Detect and verify one scan (`manifest` None: detections only, sent to review)."""
        return verify(
            self.engine.detect(scan), manifest, config=self.config, decode_ms=decode_ms, reference=self.reference
        )

    def inspect_batch(
        self, scans: Sequence[Scan], manifests: Sequence[Manifest | None], *, decode_ms: Sequence[float | None]
    ) -> list[Verdict]:
        """`inspect` for several scans, their detections from one `detect_batch` (`xray.rescore`)."""
        return [
            verify(found, manifest, config=self.config, decode_ms=ms, reference=self.reference)
            for found, manifest, ms in zip(detect_batch(self.engine, scans), manifests, decode_ms, strict=True)
        ]


def detect_batch(engine: Detector, scans: Sequence[Scan]) -> list[Detections]:
    """The engine's `detect_batch` (batched model runs, equal to `detect` scan by scan) when it has
    one, else `detect` on each scan: fakes and older engines batch too."""
    batched = getattr(engine, "detect_batch", None)
    return list(batched(scans)) if callable(batched) else [engine.detect(scan) for scan in scans]


def _threshold_for_rate(clean_risks: list[float], rate: float) -> float:
    """Lowest threshold t with at most `rate` of the clean scans at risk >= t."""
    ranked = sorted(clean_risks, reverse=True)
    allowed = int(rate * len(ranked))  # false alarms we may keep
    if allowed >= len(ranked):
        return 0.0
    # Just above the highest clean risk we may not flag.
    return min(1.0, ranked[allowed] + 1e-6)


def calibrate(
    risks: list[float],
    mismatch: list[bool],
    *,
    false_alarm: float,
    review_rate: float | None = None,
    base: VerifierConfig | None = None,
    formats: Sequence[str] | None = None,
    min_format_clean: int = MIN_FORMAT_CLEAN,
) -> VerifierConfig:
    """Set the red threshold to a false-alarm rate on validation scans (and yellow to a review rate).

    Args:
        risks: The verifier's risk per validation scan.
        mismatch: Whether each scan's manifest really disagrees with its contents.
        false_alarm: Largest fraction of matching scans allowed in the red channel.
        review_rate: Largest fraction of matching scans sent to yellow or red
            (default: five times the false-alarm rate).
        base: Other settings to keep.
        formats: Each scan's format (`Detections.scan_format`). A format with at least
            `min_format_clean` matching scans gets its own thresholds at the same rates, so
            that one scanner's exports cannot spend the others' false alarms; the pooled
            thresholds judge the rest.

    Raises:
        ValueError: no matching scans to calibrate on, or a rate outside (0, 1).
    """
    if len(risks) != len(mismatch) or (formats is not None and len(formats) != len(risks)):
        raise ValueError(f"{len(risks)} risks but {len(mismatch)} labels and {len(formats or risks)} formats")
    clean = [r for r, m in zip(risks, mismatch) if not m]
    if not clean:
        raise ValueError("calibration needs scans whose manifest matches their contents")
    review_rate = min(1.0, 5 * false_alarm) if review_rate is None else review_rate
    for name, v in (("false_alarm", false_alarm), ("review_rate", review_rate)):
        if not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {v}")

    def thresholds(clean: list[float]) -> FormatThresholds:
        red = _threshold_for_rate(clean, false_alarm)
        return FormatThresholds(yellow=min(_threshold_for_rate(clean, max(review_rate, false_alarm)), red), red=red)

    pooled = thresholds(clean)
    by_format = {}
    for f in sorted(set(formats or [])):
        own = [r for r, m, g in zip(risks, mismatch, formats or []) if g == f and not m]
        if f and len(own) >= min_format_clean:
            by_format[f] = thresholds(own)
    base = base or VerifierConfig()
    return base.model_copy(
        update={"red": pooled.red, "yellow": pooled.yellow, "false_alarm_rate": false_alarm, "by_format": by_format}
    )
