"""The `Manifest`: the goods declared for one container (JSON in and out)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xray.errors import ManifestError
from xray.goods import GoodsTable, default_goods_table, normalize_hs

MAX_MANIFEST_LINES = 1000
MAX_MANIFEST_BYTES = 1_000_000
# A manifest is two levels deep; past this, nesting is an attack on the parser's recursion.
MAX_JSON_DEPTH = 32
# Longer number literals make int() quadratic (and Python refuses past 4,300 digits).
MAX_NUMBER_CHARS = 40
_ASCII_HS = re.compile(r"^[0-9]{2,10}$")
# Ids end up in file names, logs and SQL text columns (PostgreSQL refuses NUL).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text, brackets inside strings ignored.

    Runs before `json.loads`, so a deeply nested body is refused without recursing."""
    depth = deepest = 0
    for m in _BRACKET_OR_STRING.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise ValueError(f"number with {len(literal)} digits is too long")
    return int(literal)


def _bounded_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise ValueError(f"number of {len(literal)} characters is too long")
    return float(literal)


def parse_json(
    data: str | bytes, *, what: str = "manifest", max_bytes: int = MAX_MANIFEST_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Untrusted JSON -> Python values, with size, depth, number-length and finiteness limits.

    Raises:
        ManifestError: naming what is wrong; never RecursionError or ValueError.
    """
    if len(data) > max_bytes:
        raise ManifestError(f"{what} is {len(data)} bytes, the limit is {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise ManifestError(f"{what} is not UTF-8 text: {e.reason} at byte {e.start}") from None
    if json_depth(text) > max_depth:
        raise ManifestError(f"{what} is nested more than {max_depth} levels deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_bounded_float)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise ManifestError(f"{what} is not acceptable JSON: {e}") from None
    try:
        # A lone surrogate ("\\ud800") parses, but no UTF-8 writer (database, log, response) can store it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"{what} holds a lone UTF-16 surrogate escape, which is not text") from None
    return value


class ManifestLine(BaseModel):
    """One declared line: an HS code and what the declarant says about it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    hs_code: str = Field(min_length=2, max_length=16, description="Harmonized System code, 2-10 digits")
    description: str = Field(default="", max_length=500, pattern=r"^[^\x00]*$")
    quantity: float | None = Field(default=None, ge=0)
    unit: str | None = Field(default=None, max_length=32, pattern=r"^[^\x00]*$")
    weight_kg: float | None = Field(default=None, ge=0)

    @field_validator("hs_code")
    @classmethod
    def _digits(cls, v: str) -> str:
        code = normalize_hs(v)
        # ASCII only: str.isdigit() also takes "８７０３" and "²³⁴⁵", which match no HS prefix.
        if not _ASCII_HS.match(code):
            raise ValueError(f"HS code must be 2 to 10 ASCII digits, got {v!r}")
        return code


class Manifest(BaseModel):
    """The declaration for one container; no lines means declared empty."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    container_id: str = Field(min_length=1, max_length=64)
    lines: list[ManifestLine] = Field(default_factory=list, max_length=MAX_MANIFEST_LINES)

    @field_validator("container_id")
    @classmethod
    def _printable(cls, v: str) -> str:
        if _CONTROL.search(v):
            raise ValueError("container id must not contain control characters")
        return v

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
        raw = parse_json(data)
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
