"""Request and response bodies of the inspection API (pydantic), and their making from stored rows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xray.service.store import InspectionRow, ReviewRow, as_utc
from xray.verdict import Channel, Outcome, Verdict


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong with the request, in words")


class Links(BaseModel):
    self: str
    overlay: str
    review: str


class ReviewIn(BaseModel):
    """An officer's decision on an inspection: the labelled feedback for retraining.

    `confirm` keeps the inspection's channel (a `channel` given with it must be that one);
    `override` needs the `channel` decided on."""

    # The override rule in the schema too, so that clients (and schemathesis) see what the server checks.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"properties": {"decision": {"const": "confirm"}}},
                {
                    "properties": {"decision": {"const": "override"}, "channel": {"type": "string"}},
                    "required": ["channel"],
                },
            ]
        },
    )

    decision: Literal["confirm", "override"] = Field(description="confirm the channel, or override it")
    channel: Channel | None = Field(default=None, description="the channel decided on (required for override)")
    # Line breaks and tabs are fine in a note; other control characters (NUL) are not text.
    note: str = Field(default="", max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
    reviewer: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="who decided (officer id or name)",
    )

    @model_validator(mode="after")
    def _channel_fits_decision(self) -> ReviewIn:
        if self.decision == "override" and self.channel is None:
            raise ValueError("an override needs the channel decided on (green, yellow or red)")
        return self


class Review(BaseModel):
    decision: Literal["confirm", "override"]
    channel: Channel
    note: str
    reviewer: str
    created: datetime


class Inspection(Verdict):
    """The verdict as the verifier built it (its goods table included), plus what the audit trail
    knows about it; nothing in it is derived again."""

    inspection_id: str
    created: datetime
    client: str
    container_id: str | None = None
    note: str = Field(default="", description="why the verdict is not an ordinary one (e.g. no manifest)")
    image_sha256: list[str] = Field(default_factory=list)
    present: float = Field(description="score at which goods count as seen by this model")
    review: Review | None = None
    reviews: list[Review] = Field(default_factory=list, description="every review, oldest first")
    links: Links


class InspectionSummary(BaseModel):
    inspection_id: str
    created: datetime
    client: str
    scan_id: str
    container_id: str | None
    verdict: Outcome
    channel: Channel
    risk: float
    model_id: str
    model_version: str
    note: str
    review: Review | None
    links: Links


class InspectionPage(BaseModel):
    items: list[InspectionSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null at the end")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    model_loaded: bool
    model_warmed: bool
    database: bool
    model_id: str | None = None
    model_version: str | None = None
    execution_provider: str | None = None  # the onnxruntime provider running the model


def links_for(inspection_id: str) -> Links:
    base = f"/v1/inspections/{inspection_id}"
    return Links(self=base, overlay=f"{base}/overlay.png", review=f"{base}/review")


def _review(row: ReviewRow | InspectionRow) -> Review | None:
    # The rows hold plain strings; validating them gives the typed decision and channel back.
    if isinstance(row, ReviewRow):
        fields = {
            "decision": row.decision,
            "channel": row.channel,
            "note": row.note,
            "reviewer": row.reviewer,
            "created": as_utc(row.created),
        }
    elif row.review_decision is None or row.reviewed_at is None:
        return None
    else:
        fields = {
            "decision": row.review_decision,
            "channel": row.review_channel,
            "note": row.review_note or "",
            "reviewer": row.reviewer or "",
            "created": as_utc(row.reviewed_at),
        }
    return Review.model_validate(fields)


def inspection_of(row: InspectionRow, verdict: Verdict | None = None) -> Inspection:
    """The API view of a recorded inspection; `verdict` is the row's own, when the caller still holds it
    (otherwise it is read from the row, once)."""
    verdict = verdict if verdict is not None else Verdict.model_validate(row.verdict)
    return Inspection(
        **{k: getattr(verdict, k) for k in Verdict.model_fields},
        inspection_id=row.id,
        created=as_utc(row.created),
        client=row.client,
        container_id=row.container_id,
        note=row.note,
        image_sha256=list(row.image_sha256),
        present=row.present,
        review=_review(row),
        reviews=[r for r in (_review(x) for x in row.reviews) if r is not None],
        links=links_for(row.id),
    )


def summary_of(row: InspectionRow) -> InspectionSummary:
    return InspectionSummary(
        inspection_id=row.id,
        created=as_utc(row.created),
        client=row.client,
        scan_id=row.scan_id,
        container_id=row.container_id,
        verdict=Outcome(row.outcome),
        channel=Channel(row.channel),
        risk=row.risk,
        model_id=row.model_id,
        model_version=row.model_version,
        note=row.note,
        review=_review(row),
        links=links_for(row.id),
    )
