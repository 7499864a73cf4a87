"""The `Verdict`: what the verifier concludes about a scan and its manifest."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from xray.detection import Detection


class Outcome(str, Enum):
    MATCH = "match"
    MISMATCH = "mismatch"
    INCONCLUSIVE = "inconclusive"


class Channel(str, Enum):
    """Customs lanes: release, document/operator review, physical inspection."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class FindingKind(str, Enum):
    UNDECLARED = "undeclared"  # seen, and no declared line explains it
    NOT_SEEN = "not_seen"  # declared, and no evidence of it
    SUBSTITUTION = "substitution"  # declared A, loaded B
    FALSE_EMPTY = "false_empty"  # declared empty, loaded
    EMPTY = "empty"  # declared goods, container empty
    UNKNOWN_HS = "unknown_hs"  # an HS code that maps to no category


class Finding(BaseModel):
    kind: FindingKind
    category: str | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[tuple[float, float, float, float]] = Field(default_factory=list)
    detail: str = ""


class Verdict(BaseModel):
    scan_id: str
    verdict: Outcome
    channel: Channel
    risk: float = Field(ge=0.0, le=1.0)
    findings: list[Finding] = Field(default_factory=list)
    detections: list[Detection] = Field(default_factory=list)
    declared: list[str] = Field(default_factory=list)
    image_scores: dict[str, float] = Field(default_factory=dict)  # scan-level presence per category
    # What the verifier weighed per category (calibrated presence, or the best score it used).
    evidence: dict[str, float] = Field(default_factory=dict)
    model_id: str = ""
    model_version: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
