"""The swap test: import a stand-in archive, score true vs swapped declarations, report and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xray.cli import main
from xray.data.format import split_records
from xray.errors import DatasetError
from xray.goods import default_goods_table
from xray.manifest import Manifest
from xray.scan import Scan
from xray.simulate.archive import generate_archive
from xray.swap import conclusion, swap_metrics, swap_pairs, swap_test


@pytest.fixture(scope="module")
def archive_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 36-scan stand-in archive (10 % wrong declarations), imported through `xray dataset import archive`."""
    root = tmp_path_factory.mktemp("swap")
    generate_archive(root / "archive", count=36, seed=5, progress=False)
    assert main(["dataset", "import", "archive", "--scans", str(root / "archive" / "scans"), "--table",
                 str(root / "archive" / "declarations.csv"), "--out", str(root / "ds"), "--splits", "0.5", "0.1",
                 "0.4", "--quiet"]) == 0
    return root / "ds"


class Oracle:
    """Knows every scan's declaration: risk 0 for it, 1 for any other."""

    name = "oracle"

    def __init__(self, data: Path):
        self.codes = {r.scan_id: [line.hs_code for line in Manifest.load(r.manifest_path).lines]
                      for r in split_records(data, "test")}

    def observe(self, scan: Scan) -> Any:
        return scan.id

    def risk(self, observed: Any, manifest: Manifest) -> float:
        return 0.0 if [line.hs_code for line in manifest.lines] == self.codes[observed] else 1.0

    def recognised(self, observed: Any) -> str:
        return "empty"


class Constant(Oracle):
    name = "constant"

    def risk(self, observed: Any, manifest: Manifest) -> float:
        return 0.5


def test_informative_scorer_gets_auc_1_and_constant_one_gets_half(archive_dataset: Path) -> None:
    report = swap_test([Oracle(archive_dataset), Constant(archive_dataset)], archive_dataset, progress=False)
    oracle, constant = report["scorers"]["oracle"], report["scorers"]["constant"]
    assert oracle["roc_auc"] == 1.0
    assert oracle["at_false_alarm"]["0.05"]["detection_rate"] == 1.0
    assert oracle["at_false_alarm"]["0.01"]["detection_rate"] == 1.0
    assert constant["roc_auc"] == 0.5
    # A constant risk cannot flag a swap without flagging every true declaration too.
    assert constant["at_false_alarm"]["0.05"]["detection_rate"] == 0.0
    assert report["conclusion"].startswith("no baseline")


def test_cli_swap_end_to_end_with_the_baseline(archive_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["evaluate", "--swap", "--model", "baseline", "--data", str(archive_dataset), "--out", str(out),
                 "--quiet"]) == 0
    report = json.loads((out / "swap.json").read_text())
    assert report["pairs"] + report["skipped_not_declaring_goods"] == report["scans"] > 0
    base = report["scorers"]["baseline"]
    assert 0.0 <= base["roc_auc"] <= 1.0
    assert set(base["at_false_alarm"]) == {"0.05", "0.01"}
    for point in base["at_false_alarm"].values():
        assert point["false_alarm_rate"] <= 0.05
    labels = report["categories"]
    assert len(base["confusion"]) == len(labels) and all(len(row) == len(labels) for row in base["confusion"])
    assert sum(map(sum, base["confusion"])) == report["pairs"]
    assert sum(c["scans"] for c in base["per_category"].values()) == report["pairs"]
    assert (out / "swap_confusion.png").stat().st_size > 0 and (out / "swap_roc.png").stat().st_size > 0
    rows = (out / "swap_records.jsonl").read_text().splitlines()
    assert len(rows) == report["pairs"]


def test_swapped_declarations_explain_none_of_the_declared_and_are_seeded(archive_dataset: Path) -> None:
    table = default_goods_table()
    records = split_records(archive_dataset, "test")
    first, skipped = swap_pairs(records, seed=1)
    again, _ = swap_pairs(records, seed=1)
    assert [p.swapped for _, p in first] == [p.swapped for _, p in again]
    assert len(first) + skipped == len(records)
    for _, p in first:
        assert not any(table.compatible(p.swapped, d) for d in p.declared)
        assert p.swap_manifest.categories(table)[0] == [p.swapped]
        assert p.swap_manifest.container_id == p.true_manifest.container_id


def test_metrics_and_conclusion() -> None:
    m = swap_metrics([0.1, 0.2, 0.3, 0.9], [0.8, 0.95, 0.4, 0.2], false_alarms=(0.25,))
    assert m["roc_auc"] == pytest.approx(11.5 / 16)  # the 0.2 tie counts half
    point = m["at_false_alarm"]["0.25"]
    assert point["false_alarm_rate"] == 0.25 and point["detection_rate"] == 0.75  # just above 0.3: one false alarm
    report = {"scorers": {"model": {"roc_auc": 0.6}, "baseline": {"roc_auc": 0.8}}}
    assert "does NOT beat" in conclusion(report)
    report["scorers"]["model"]["roc_auc"] = 0.9
    assert "beats the simple baseline" in conclusion(report)


def test_a_split_without_declared_goods_is_a_dataset_error(archive_dataset: Path) -> None:
    with pytest.raises(DatasetError):
        swap_test([Constant(archive_dataset)], archive_dataset, split="nosuchsplit", progress=False)


def test_scans_whose_truth_is_a_mismatch_are_not_taken_as_true_declarations(archive_dataset: Path,
                                                                              tmp_path: Path) -> None:
    """A simulated set's smuggled goods make its own declaration wrong: such scans leave the test."""
    import shutil

    data = tmp_path / "ds"
    shutil.copytree(archive_dataset, data)
    test_ids = [r.scan_id for r in split_records(data, "test")]
    lines = [json.loads(x) for x in (data / "truth.jsonl").read_text().splitlines() if x.strip()]
    for item in lines:
        item["mismatch"] = item["scan_id"] == test_ids[0]
    (data / "truth.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = swap_test([Oracle(archive_dataset)], archive_dataset, progress=False)
    after = swap_test([Oracle(data)], data, progress=False)
    assert after["skipped_known_mismatch"] == 1 and before["skipped_known_mismatch"] == 0
    assert test_ids[0] not in {r["scan_id"] for r in after["records"]}
    assert after["pairs"] == before["pairs"] - (1 if test_ids[0] in {r["scan_id"] for r in before["records"]} else 0)


def test_the_swap_uses_the_datasets_goods_table(tmp_path: Path) -> None:
    from xray.data.format import goods_table_name

    (tmp_path / "dataset.json").write_text(json.dumps({"format": "xray-dataset", "goods_table": "parcel"}))
    assert goods_table_name(tmp_path) == "parcel"
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "xray-dataset"}))
    assert goods_table_name(tmp_path) is None
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="dataset.json"):
        goods_table_name(tmp_path)


class Inspector(Oracle):
    """Knows what was loaded: flags the swaps, and the declarations known to be wrong."""

    name = "inspector"

    def __init__(self, data: Path, wrong: set[str]):
        super().__init__(data)
        self.wrong = wrong

    def risk(self, observed: Any, manifest: Manifest) -> float:
        return 1.0 if observed in self.wrong else super().risk(observed, manifest)


def test_known_wrong_declarations_are_left_out_of_the_verified_figures(archive_dataset: Path) -> None:
    """Flagging a declaration the archive's truth says is wrong counts as a false alarm as written,
    and that scan leaves the verified figures (the view a site gets from inspection outcomes)."""
    ids = [r.scan_id for r in split_records(archive_dataset, "test")]
    pairs, _ = swap_pairs(split_records(archive_dataset, "test"), seed=0)
    wrong_id = pairs[0][1].scan_id
    truth = {sid: sid == wrong_id for sid in ids}
    report = swap_test([Inspector(archive_dataset, {wrong_id})], archive_dataset, archive_truth=truth,
                       progress=False)
    m = report["scorers"]["inspector"]
    assert m["roc_auc"] < 1.0  # its true declaration got risk 1, tied with the swaps
    verified = m["verified"]
    assert verified["excluded_wrong_declarations"] == 1
    assert verified["pairs"] == report["pairs"] - 1
    assert verified["roc_auc"] == 1.0 and verified["at_false_alarm"]["0.01"]["detection_rate"] == 1.0
    assert m["clerical_errors"]["roc_auc"] == 1.0
    assert [r["scan_id"] for r in report["records"] if r["known_wrong"]] == [wrong_id]  # what the plot leaves out


def test_the_conclusion_judges_the_verified_view_and_states_the_written_one() -> None:
    report = {"scorers": {"model": {"roc_auc": 0.9, "verified": {"roc_auc": 0.95, "excluded_wrong_declarations": 3}},
                          "baseline": {"roc_auc": 0.8, "verified": {"roc_auc": 0.99}}}}
    text = conclusion(report)
    assert "model on verified declarations (swap AUC 0.950) does NOT beat" in text  # the verified view decides, though as written the model wins
    assert "learned nothing worth shipping" in text
    assert "3 known clerical errors" in text and "0.900 against 0.800" in text
    report["scorers"]["model"] = {"roc_auc": 0.7, "verified": {"roc_auc": 0.995, "excluded_wrong_declarations": 3}}
    text = conclusion(report)
    assert "model on verified declarations (swap AUC 0.995) beats" in text and "nothing worth" not in text
    assert "0.700 against 0.800" in text  # the capped view is still reported
