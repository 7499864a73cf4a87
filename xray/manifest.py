"""The `Manifest`: the goods declared for one container (JSON in and out)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xray.errors import ManifestError
from xray.goods import GoodsTable, default_goods_table, normalize_hs

MAX_MANIFEST_LINES = 1000
MAX_MANIFEST_BYTES = 1_000_000


class ManifestLine(BaseModel):
    """One declared line: an HS code and what the declarant says about it."""

    model_config = ConfigDict(extra="forbid")

    hs_code: str = Field(min_length=2, max_length=16, description="Harmonized System code, 2-10 digits")
    description: str = Field(default="", max_length=500)
    quantity: float | None = Field(default=None, ge=0)
    unit: str | None = Field(default=None, max_length=32)
    weight_kg: float | None = Field(default=None, ge=0)

    @field_validator("hs_code")
    @classmethod
    def _digits(cls, v: str) -> str:
        code = normalize_hs(v)
        if not code.isdigit() or not 2 <= len(code) <= 10:
            raise ValueError(f"HS code must be 2 to 10 digits, got {v!r}")
        return code


class Manifest(BaseModel):
    """The declaration for one container; no lines means declared empty."""

    model_config = ConfigDict(extra="forbid")

    container_id: str = Field(min_length=1, max_length=64)
    lines: list[ManifestLine] = Field(default_factory=list, max_length=MAX_MANIFEST_LINES)

    @property
    def declared_empty(self) -> bool:
        return not self.lines

    def categories(self, table: GoodsTable | None = None) -> tuple[list[str], list[str]]:
        """Declared goods categories and the HS codes that map to none.

        Returns:
            (categories in declaration order without repeats, unknown HS codes)
        """
        table = table or default_goods_table()
        cats: list[str] = []
        unknown: list[str] = []
        for line in self.lines:
            c = table.category_of(line.hs_code)
            if c is None:
                unknown.append(line.hs_code)
            elif c not in cats:
                cats.append(c)
        return cats, unknown

    @classmethod
    def from_json(cls, data: str | bytes) -> Manifest:
        """Parse and validate manifest JSON.

        Raises:
            ManifestError: naming what is wrong (not JSON, a field, a value).
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is {len(data)} bytes, the limit is {MAX_MANIFEST_BYTES}")
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"manifest is not valid JSON: {e}") from e
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}" for err in e.errors()
            )
            raise ManifestError(f"invalid manifest: {problems}") from e

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ManifestError(f"{path}: cannot read manifest: {e}") from e
        try:
            return cls.from_json(data)
        except ManifestError as e:
            raise ManifestError(f"{path}: {e}") from e

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2, exclude_none=True))
