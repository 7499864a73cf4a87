"""The stand-in archive: scan files + declarations table, no boxes, known clerical errors, deterministic."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from xray.cli import main
from xray.errors import ConfigError
from xray.goods import default_goods_table
from xray.simulate.archive import generate_archive
from xray.sources.files import read_scan


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_archive_is_single_energy_8bit_jpeg_with_declarations_and_no_boxes(tmp_path: Path) -> None:
    summary = generate_archive(tmp_path / "a", count=4, seed=3, wrong_declarations=0.0, progress=False)
    assert summary["scans"] == 4 and summary["profile"] == "export-8bit-jpeg"
    decl = _rows(tmp_path / "a" / "declarations.csv")
    assert list(decl[0]) == ["file", "container_id", "hs_codes"]  # what `dataset import archive` reads
    truth = {r["scan_id"]: r for r in _rows(tmp_path / "a" / "truth_loaded.csv")}
    for row in decl:
        assert row["file"].endswith(".jpg")
        scan = read_scan(tmp_path / "a" / "scans" / row["file"])
        assert scan.channels.shape[0] == 1 and scan.bit_depth == 8
        t = truth[Path(row["file"]).stem]
        assert t["hs_codes"] == t["true_hs_codes"] == row["hs_codes"]  # no clerical errors asked for
    # An archive, not a dataset: scan files and tables, no boxes anywhere.
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"scans", "declarations.csv", "truth_loaded.csv",
                                                            "archive.json"}


def test_wrong_declarations_name_goods_that_are_not_loaded(tmp_path: Path) -> None:
    generate_archive(tmp_path / "a", count=5, seed=4, wrong_declarations=1.0, progress=False)
    table = default_goods_table()
    for t in _rows(tmp_path / "a" / "truth_loaded.csv"):
        assert t["wrong_declaration"] == "1"
        declared = [table.category_of(c) for c in t["hs_codes"].split(";")]
        loaded = [c for c in t["loaded"].split(";") if c]
        assert all(d is not None and not any(table.compatible(d, c) for c in loaded) for d in declared)
        assert t["hs_codes"] != t["true_hs_codes"]


def test_same_seed_same_archive(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_archive(tmp_path / name, count=3, seed=7, progress=False)
    assert (tmp_path / "a" / "truth_loaded.csv").read_bytes() == (tmp_path / "b" / "truth_loaded.csv").read_bytes()
    for f in (tmp_path / "a" / "scans").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / "scans" / f.name).read_bytes()


def test_bad_parameters_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wrong declarations"):
        generate_archive(tmp_path / "a", count=2, wrong_declarations=1.5, progress=False)
    with pytest.raises(ConfigError, match="profile"):
        generate_archive(tmp_path / "b", count=2, profile="no-such-scanner", progress=False)


def test_cli_archive_mode_and_its_option_only_there(tmp_path: Path) -> None:
    assert main(["simulate", "--archive", "--out", str(tmp_path / "a"), "--count", "2", "--workers", "1",
                 "--wrong-declarations", "0.5", "--quiet"]) == 0
    assert len(_rows(tmp_path / "a" / "declarations.csv")) == 2
    assert main(["simulate", "--out", str(tmp_path / "b"), "--count", "2", "--wrong-declarations", "0.1"]) == 2
    assert np.isfinite(float(_rows(tmp_path / "a" / "truth_loaded.csv")[0]["seed"]))
