"""The `Detection`: one box of goods found in a scan, in scan pixels."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Detection(BaseModel):
    """A box (x1, y1, x2, y2) in scan pixel coordinates, a goods category and a score."""

    model_config = ConfigDict(frozen=True)

    box: tuple[float, float, float, float]
    category: str
    score: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Detection:
        x1, y1, x2, y2 = self.box
        if not (x2 >= x1 and y2 >= y1):
            raise ValueError(f"box must have x2 >= x1 and y2 >= y1, got {self.box}")
        return self

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), xyxy."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)

    def area(z: np.ndarray) -> np.ndarray:
        return (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])

    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


class DomainCheck(BaseModel):
    """How far a scan is from what the model was trained on (measured by the engine; a later
    model card calibrates the threshold). Out of domain, the verifier never sends a scan to red."""

    model_config = ConfigDict(frozen=True)

    in_domain: bool = True
    distance: float | None = None
    threshold: float | None = None
    reason: str = ""
    # The guard's measures beyond their thresholds (`xray.domain.REASONS`' keys: stats, profile, ...).
    off: list[str] = Field(default_factory=list)


class HoldCheck(BaseModel):
    """Whether the container's hold is empty, measured from attenuation by the engine (`xray.hold`),
    not read by the model: an empty hold declared with goods is a mismatch even on a scan the
    model cannot read."""

    model_config = ConfigDict(frozen=True)

    empty: bool = False
    load: float = Field(description="95th percentile over the hold's columns of their 95th percentile of attenuation")
    walls: float = Field(description="the hold's median attenuation (the two side walls)")
    floor: float = Field(description="attenuation of the floor band's darkest row (its 25th percentile); 0: no floor")
    floor_band: float = Field(default=0.0, description="the floor band's thickness, as a share of the height")
    note: str = Field(default="", description="why the measures were not read as empty, when not by their values")
    region: tuple[float, float, float, float] | None = Field(
        default=None,
        description="the hold as measured, x1, y1, x2, y2, in the pixels of the image measured (scan pixels from the engine)",
    )


class Detections(BaseModel):
    """What the engine found in one scan: boxes in scan pixels, the image-level presence score
    per category (empty when the model has no image head), the time of each stage in ms, and
    the out-of-domain measurement (None: not measured)."""

    model_config = ConfigDict(frozen=True)

    scan_id: str = ""
    detections: list[Detection] = Field(default_factory=list)
    image_scores: dict[str, float] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    domain: DomainCheck | None = None
    hold: HoldCheck | None = None  # None: not measured (a material-coded colour scan, an RGB model)
    # The scan's format (`xray.domain.look_group`: kind and bit depth, e.g. "single-8bit", and
    # "-palette" for a pseudo-colour export read back to grey): the verifier's thresholds may be
    # calibrated per format. Empty: not known.
    scan_format: str = ""
    # A scan embedding (unit length) for verification by reference; None when the model has none.
    embedding: list[float] | None = None
    model_id: str = ""
    model_version: str = ""
