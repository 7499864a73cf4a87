"""Import a customs archive: scans plus a declarations table (HS codes per container), no boxes.

The table is CSV or JSONL (chosen by suffix). Each row names a scan file (`file`, or
`high` + `low`), its `container_id` and the declared `hs_codes`; optionally `scan_id`,
`pixel_mm`, and the inspection `outcome` (`confirmed`, `goods_found` with `found_hs`,
`found_empty`). Bad rows and bad files are reported and skipped, never fatal: real
archives hold clerical errors, missing files and half-written exports.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from xray.errors import DatasetError
from xray.goods import EMPTY, default_goods_table
from xray.manifest import Manifest, ManifestLine
from xray.sources.files import split_energy_suffix

from .layout import SCAN_ID_RE, DatasetWriter, ImportReport, Staged
from .splits import DEFAULT_FRACTIONS, assign_splits, check_fractions

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("container_id", "hs_codes")
OPTIONAL_COLUMNS = ("file", "high", "low", "scan_id", "outcome", "found_hs", "pixel_mm")
OUTCOMES = ("confirmed", "goods_found", "found_empty")
# The stratum of a scan whose declared HS codes map to no goods category.
UNMAPPED = "unmapped"
_LIST_SEP = re.compile(r"[;,\s]+")


@dataclass(frozen=True)
class Declaration:
    """One valid row of the declarations table."""

    row: int
    high: Path
    low: Path | None
    scan_id: str
    container_id: str
    hs_codes: list[str]
    outcome: str | None = None
    found_hs: list[str] = field(default_factory=list)
    pixel_mm: tuple[float, float] | None = None

    @property
    def manifest(self) -> Manifest:
        return Manifest(container_id=self.container_id, lines=[ManifestLine(hs_code=c) for c in self.hs_codes])


class _RowError(ValueError):
    """A row that cannot be imported; the message says why."""


def _codes(value: Any, column: str) -> list[str]:
    """HS codes from `a;b`, `a, b`, `a b` or a JSON list; each checked as a manifest line checks it."""
    if value is None:
        return []
    items = [str(v) for v in value] if isinstance(value, list) else _LIST_SEP.split(str(value).strip())
    codes = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            codes.append(ManifestLine(hs_code=item).hs_code)
        except ValidationError as e:
            raise _RowError(f"invalid HS code {item!r} in {column}: must be 2 to 10 digits") from e
    return codes


def _pixel_mm(value: Any) -> tuple[float, float] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    items = value if isinstance(value, list) else _LIST_SEP.split(str(value).strip())
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError) as e:
        raise _RowError(f"pixel_mm {value!r} is not one or two numbers") from e
    if len(numbers) not in (1, 2) or not all(math.isfinite(n) and 0 < n <= 1000 for n in numbers):
        raise _RowError(f"pixel_mm {value!r} must be one or two spacings in mm, each in (0, 1000]")
    return (numbers[0], numbers[-1])


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _scan_path(scans_dir: Path, name: str) -> Path:
    # Checked on the names, not resolved: a folder of symlinks into the archive's storage is fine.
    path = Path(os.path.normpath(scans_dir / name))
    if not path.is_relative_to(os.path.normpath(scans_dir)):
        raise _RowError(f"{name!r} is outside the scans folder {scans_dir}")
    return path


def _declaration(row: dict[str, Any], line: int, scans_dir: Path) -> Declaration:
    high_name = _text(row, "file") or _text(row, "high")
    if not high_name:
        raise _RowError("no scan file (columns file, or high and low, are empty)")
    low_name = "" if _text(row, "file") else _text(row, "low")
    high = _scan_path(scans_dir, high_name)
    low = _scan_path(scans_dir, low_name) if low_name else None
    scan_id = _text(row, "scan_id") or split_energy_suffix(Path(high_name).stem)[0]
    if not SCAN_ID_RE.match(scan_id):
        raise _RowError(f"scan id {scan_id!r} is not usable as a file name (letters, digits, '.', '_', '-'); "
                        "give a scan_id column")
    container_id = _text(row, "container_id")
    if not 1 <= len(container_id) <= 64:
        raise _RowError(f"container_id {container_id!r} must be 1 to 64 characters")
    outcome = _text(row, "outcome").lower() or None
    if outcome is not None and outcome not in OUTCOMES:
        raise _RowError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    found_hs = _codes(row.get("found_hs"), "found_hs")
    if outcome == "goods_found" and not found_hs:
        raise _RowError("outcome goods_found needs the HS codes of the goods found (found_hs)")
    return Declaration(line, high, low, scan_id, container_id, _codes(row.get("hs_codes"), "hs_codes"),
                       outcome, found_hs, _pixel_mm(row.get("pixel_mm")))


def _csv_rows(table: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    header = text.splitlines()[0] if text else ""
    # Spreadsheets in many locales write ';' or tab separated "CSV".
    delimiter = "," if "," in header else ";" if ";" in header else "\t" if "\t" in header else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
    reader.fieldnames = fields
    _check_columns(table, set(fields))
    for row in reader:
        yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def _jsonl_rows(table: Path, text: str, report: ImportReport) -> Iterator[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            report.skip(table, f"not a JSON object: {e}", row=n)
            continue
        if not isinstance(obj, dict):
            report.skip(table, f"not a JSON object but {type(obj).__name__}", row=n)
            continue
        rows.append((n, {str(k).strip().lower(): v for k, v in obj.items()}))
    _check_columns(table, set().union(*(r.keys() for _, r in rows)) if rows else set())
    yield from rows


def _check_columns(table: Path, columns: set[str]) -> None:
    for col in REQUIRED_COLUMNS:
        if col not in columns:
            raise DatasetError(f"{table}: the declarations table has no {col!r} column (it has: "
                               f"{', '.join(sorted(columns)) or 'none'})")
    if "file" not in columns and "high" not in columns:
        raise DatasetError(f"{table}: the declarations table has no 'file' column (nor 'high' and 'low')")


def read_declarations(table: str | Path, scans_dir: str | Path, report: ImportReport) -> list[Declaration]:
    """The valid rows of a declarations table (CSV or JSONL); invalid rows go to the report.

    Raises:
        DatasetError: the table is missing, unreadable, of another format, or lacks a required column.
    """
    table, scans_dir = Path(table), Path(scans_dir)
    suffix = table.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise DatasetError(f"{table}: a declarations table is .csv or .jsonl, not {suffix or 'without suffix'!r}")
    try:
        text = table.read_text(encoding="utf-8-sig")  # -sig: spreadsheets start UTF-8 CSV with a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{table}: cannot read the declarations table: {e}") from e
    rows = _csv_rows(table, text) if suffix == ".csv" else _jsonl_rows(table, text, report)
    out: list[Declaration] = []
    unknown: set[str] = set()
    first_row_of: dict[str, int] = {}
    for line, row in rows:
        unknown |= set(row) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS)
        try:
            decl = _declaration(row, line, scans_dir)
        except _RowError as e:
            report.skip(_text(row, "file") or _text(row, "high") or table, str(e), row=line)
            continue
        if decl.scan_id in first_row_of:
            report.skip(decl.high, f"scan id {decl.scan_id!r} is already used by table line "
                        f"{first_row_of[decl.scan_id]}; give a scan_id column", row=line)
            continue
        first_row_of[decl.scan_id] = line
        out.append(decl)
    if unknown:
        report.warnings.append(f"{table}: ignored unknown columns: {', '.join(sorted(unknown))}")
        log.warning("%s: ignored unknown columns: %s", table, ", ".join(sorted(unknown)))
    return out


def _truth(decl: Declaration, declared: list[str], split: str) -> dict[str, Any]:
    record: dict[str, Any] = {"scan_id": decl.scan_id, "split": split, "declared": declared,
                              "container": decl.container_id}
    if decl.outcome is None:
        return record
    table = default_goods_table()
    if decl.outcome == "confirmed":
        loaded = list(declared)
    elif decl.outcome == "found_empty":
        loaded = []
    else:
        loaded = list(dict.fromkeys(c for c in map(table.category_of, decl.found_hs) if c is not None))
    undeclared = [c for c in loaded if c not in declared]
    missing = [c for c in declared if c not in loaded]
    # The simulator's scenario names, so that `xray calibrate` reads archives with outcomes too.
    if not undeclared and not missing:
        scenario = "clean" if declared else "empty"
    elif not declared:
        scenario = "false_empty"
    elif not loaded:
        scenario = "empty_declared_loaded"
    elif undeclared and missing:
        scenario = "substitution"
    else:
        scenario = "undeclared" if undeclared else "missing"
    return {**record, "outcome": decl.outcome, "scenario": scenario, "mismatch": bool(undeclared or missing),
            "loaded": loaded, "undeclared": undeclared, "missing": missing}


def import_archive(
    scans_dir: str | Path,
    table: str | Path,
    out: str | Path,
    *,
    splits: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    progress: bool = True,
) -> ImportReport:
    """Import an archive of scans and declarations into the xray dataset layout.

    Args:
        scans_dir: The folder of scan files the table names (relative paths).
        table: The declarations table, `.csv` or `.jsonl`.
        out: The dataset folder to write; must not exist or be empty.
        splits: Shares of train, val and test; stratified by the first declared category,
            with all scans of one container in one split.
        seed: Seed of the split.
        progress: Show a progress bar.

    Returns:
        The report (also written to `OUT/import_report.json`).

    Raises:
        DatasetError: the table cannot be used, or no scan could be imported.
        ConfigError: bad split fractions, or `out` is not empty.
    """
    fractions = check_fractions(splits)
    scans_dir = Path(scans_dir)
    if not scans_dir.is_dir():
        raise DatasetError(f"{scans_dir}: scans folder not found")
    report = ImportReport(out=Path(out), source="archive")
    declarations = read_declarations(table, scans_dir, report)
    goods = default_goods_table()
    writer = DatasetWriter(out, goods.keys)

    accepted: list[tuple[Declaration, Staged, list[str]]] = []
    unmapped_codes: Counter[str] = Counter()
    for decl in tqdm(declarations, desc="import", unit="scan", disable=not progress):
        staged = writer.accept(report, decl.scan_id, decl.high, decl.low, pixel_mm=decl.pixel_mm, row=decl.row)
        if staged is None:
            continue
        declared, unmapped = decl.manifest.categories(goods)
        unmapped_codes.update(unmapped)
        accepted.append((decl, staged, declared))
    if unmapped_codes:  # one line, not one per scan: an archive can hold thousands
        report.warnings.append(f"HS codes that map to no goods category (kept in the manifests): "
                               f"{', '.join(f'{c} ({n} lines)' for c, n in unmapped_codes.most_common())}")
    if not accepted:
        writer.abandon(report)
        raise DatasetError(f"{table}: no scan could be imported ({len(report.skipped)} skipped; "
                           f"see {writer.out / 'import_report.json'})")

    def stratum(decl: Declaration, declared: list[str]) -> str:
        return declared[0] if declared else (EMPTY if not decl.hs_codes else UNMAPPED)

    split_of = assign_splits({d.scan_id: stratum(d, c) for d, _, c in accepted},
                             {d.scan_id: d.container_id for d, _, _ in accepted}, fractions=fractions, seed=seed)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for decl, staged, declared in accepted:
        split = split_of[decl.scan_id]
        writer.add_image(split, staged)
        writer.add_manifest(decl.scan_id, decl.manifest)
        writer.add_truth(_truth(decl, declared, split))
        for cat in declared or [stratum(decl, declared)]:
            counts[cat][split] += 1
    order = [*goods.keys, EMPTY, UNMAPPED]
    report.counts = {c: dict(counts[c]) for c in order if c in counts}
    writer.finish(
        report,
        generator={"name": "xray dataset import", "source": "archive"},
        params={"scans": str(scans_dir), "table": str(table), "split_fractions": list(fractions), "seed": seed,
                "outcomes": any(d.outcome for d, _, _ in accepted)},
        description="xray dataset imported from a customs archive",
    )
    return report
