"""The `Detection`: one box of goods found in a scan, in scan pixels."""

from __future__ import annotations

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
