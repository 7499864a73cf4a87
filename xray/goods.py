"""The goods category table: HS code -> category, risk weights, compatible pairs.

The table is data (`goods.yaml`); this module only loads and queries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from xray.errors import ConfigError

EMPTY = "empty"
_HS_RE = re.compile(r"^\d{2,10}$")


def normalize_hs(code: str) -> str:
    """Strip the separators people write into HS codes ("8471.30" -> "847130")."""
    return re.sub(r"[\s.\-]", "", str(code))


@dataclass(frozen=True)
class Category:
    key: str
    name: str
    hs_prefixes: tuple[str, ...]
    risk: float


@dataclass(frozen=True)
class GoodsTable:
    """Categories in a fixed order (the model's class order) and the HS lookup."""

    categories: tuple[Category, ...]
    compatible_pairs: frozenset[frozenset[str]]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.categories]

    def __getitem__(self, key: str) -> Category:
        for c in self.categories:
            if c.key == key:
                return c
        raise KeyError(key)

    def category_of(self, hs_code: str) -> str | None:
        """Category of an HS code by longest prefix, or None when no rule matches."""
        code = normalize_hs(hs_code)
        if not _HS_RE.match(code):
            return None
        best, best_len = None, 0
        for c in self.categories:
            for p in c.hs_prefixes:
                if code.startswith(p) and len(p) > best_len:
                    best, best_len = c.key, len(p)
        return best

    def hs_code_for(self, key: str) -> str:
        """A representative HS code of a category (its first prefix, padded to 4 digits)."""
        return self[key].hs_prefixes[0].ljust(4, "0")

    def compatible(self, a: str, b: str) -> bool:
        return a == b or frozenset((a, b)) in self.compatible_pairs


def load_goods_table(path: str | Path | None = None) -> GoodsTable:
    """Load a goods table from YAML (the bundled one by default)."""
    if path is None:
        text = resources.files("xray").joinpath("goods.yaml").read_text()
        where = "xray/goods.yaml"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"{where}: cannot read goods table: {e}") from e
    try:
        raw = yaml.safe_load(text)
        cats = tuple(
            Category(key=k, name=v["name"], hs_prefixes=tuple(str(h) for h in v["hs"]), risk=float(v["risk"]))
            for k, v in raw["categories"].items()
        )
        pairs = frozenset(frozenset(p) for p in raw.get("compatible", []))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: malformed goods table: {e}") from e
    keys = {c.key for c in cats}
    if EMPTY in keys:
        raise ConfigError(f"{where}: '{EMPTY}' is reserved and cannot be a goods category")
    for p in pairs:
        if not p <= keys or len(p) != 2:
            raise ConfigError(f"{where}: compatible pair {sorted(p)} names unknown categories")
    return GoodsTable(categories=cats, compatible_pairs=pairs)


@lru_cache(maxsize=1)
def default_goods_table() -> GoodsTable:
    return load_goods_table()


# Tables that ship with xray, by the name a dataset, config or model card gives (`goods_table`).
BUNDLED_TABLES = {"cargo": "goods.yaml", "parcel": "goods_parcel.yaml"}


@lru_cache(maxsize=8)
def goods_table(name: str | None) -> GoodsTable:
    """The table a dataset or model card names: None or "cargo" (the default), "parcel", or a YAML path.

    Raises:
        ConfigError: an unreadable or malformed table.
    """
    if name is None or name == "cargo":
        return default_goods_table()
    if name in BUNDLED_TABLES:
        return load_goods_table(Path(str(resources.files("xray").joinpath(BUNDLED_TABLES[name]))))
    return load_goods_table(name)
