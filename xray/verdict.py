"""The `Verdict`: what the verifier concludes about a scan and its manifest, with everything a
renderer (API, console, overlay, audit store) needs, so that none of them decides anything again."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from xray.detection import Detection, DomainCheck, HoldCheck

Box = tuple[float, float, float, float]
# The stages of one inspection, in the order they run; `total` is their sum (`stage_timings`).
STAGES = ("decode", "preprocess", "model", "postprocess", "verify")


class Outcome(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    INCONCLUSIVE = "inconclusive"


class Channel(StrEnum):
    """Customs lanes: release, document/operator review, physical inspection."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class FindingKind(StrEnum):
    UNDECLARED = "undeclared"  # seen, and no declared line explains it
    NOT_SEEN = "not_seen"  # declared, and no evidence of it
    SUBSTITUTION = "substitution"  # declared A, loaded B
    FALSE_EMPTY = "false_empty"  # declared empty, loaded
    EMPTY = "empty"  # declared goods, container empty
    UNKNOWN_HS = "unknown_hs"  # an HS code that maps to no category
    NO_MANIFEST = "no_manifest"  # nothing to compare with: detections only
    OUT_OF_DOMAIN = "out_of_domain"  # the model cannot read this scan: never red on the model's word
    UNLIKE_REFERENCES = "unlike_references"  # declared code unlike the site's cleared scans of it


class Finding(BaseModel):
    kind: FindingKind
    category: str | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Box] = Field(default_factory=list)
    detail: str = ""


class GoodsEvidence(BaseModel):
    """One line of the declared-vs-found table: a category that matters for this scan (declared,
    or with at least half the presence threshold of evidence)."""

    category: str
    name: str
    declared: bool
    seen: bool = Field(description="the evidence reached the presence threshold")
    evidence: float = Field(description="what the verifier weighed: calibrated presence or best score, in [0, 1]")
    threshold: float = Field(description="the presence threshold the evidence was held against")
    best_score: float = Field(description="best box score of the category")
    boxes: list[Box] = Field(default_factory=list, description="its boxes that reach the threshold, in scan pixels")


def stage_timings(stages: dict[str, float]) -> dict[str, float]:
    """Stage times in ms, rounded, in running order, with their `total`: the one place it is summed."""
    ordered = {k: stages[k] for k in STAGES if k in stages} | {k: v for k, v in stages.items() if k not in STAGES}
    ordered.pop("total", None)
    return {k: round(v, 3) for k, v in ordered.items()} | {"total": round(sum(ordered.values()), 3)}


class Verdict(BaseModel):
    scan_id: str
    verdict: Outcome
    channel: Channel
    risk: float = Field(ge=0.0, le=1.0)
    findings: list[Finding] = Field(default_factory=list)
    detections: list[Detection] = Field(default_factory=list)
    declared: list[str] = Field(default_factory=list)
    image_scores: dict[str, float] = Field(default_factory=dict)  # scan-level presence per category
    # Declared vs found; empty in verdicts stored before it was recorded.
    goods: list[GoodsEvidence] = Field(default_factory=list)
    domain: DomainCheck | None = None  # None: not measured
    hold: HoldCheck | None = None  # whether the hold is empty by its attenuation; None: not measured
    model_id: str = ""
    model_version: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
