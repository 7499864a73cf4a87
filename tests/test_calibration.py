"""Calibration and verdict evaluation on a small labelled simulated split."""

import json
import shutil

import pytest

from xray.calibration import calibrate_model, evaluate_verdicts, labelled_scans, verdict_report
from xray.errors import DatasetError
from xray.simulate.dataset import generate_dataset
from xray.verify import VerifierConfig


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal") / "ds"
    generate_dataset(root, count=8, seed=4, size="20ft", mismatch_rate=0.5, splits=(0.0, 0.0, 1.0), progress=False)
    truth = [json.loads(line) for line in (root / "truth.jsonl").read_text().splitlines()]
    assert 0 < sum(t["mismatch"] for t in truth) < len(truth)  # both kinds, or the seed needs changing
    return root


def test_calibration_stores_thresholds_in_the_model_card(tiny_model_dir, labelled, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    result = calibrate_model(model, labelled, split="test", false_alarm=0.25, progress=False)
    card = json.loads((model / "model.json").read_text())
    assert card["verifier"]["red"] == result["red"] and card["verifier"]["false_alarm_rate"] == 0.25
    assert card["verifier"]["yellow"] <= card["verifier"]["red"]
    assert result["false_alarm"] <= 0.25 and result["scans"] == 8
    assert result["evidence_rule"] in result["roc_auc_by_rule"]
    assert card["engine"]["flip"] is False and result["flip"] is False


def test_calibration_with_flip_records_it_for_later_engines(tiny_model_dir, labelled, tmp_path):
    from xray.engine import Engine

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    calibrate_model(model, labelled, split="test", false_alarm=0.25, progress=False, flip=True)
    assert json.loads((model / "model.json").read_text())["engine"] == {"flip": True}
    assert Engine(model, threads=1).flip


def test_verdict_evaluation_reports_rates_and_draws_the_roc(tiny_model_dir, labelled, tmp_path):
    report = evaluate_verdicts(tiny_model_dir, labelled, split="test", out=tmp_path / "out", progress=False)
    assert report["scans"] == 8 and 0 <= report["detection_rate"] <= 1 and 0 <= report["false_alarm_rate"] <= 1
    assert sum(v["scans"] for v in report["flagged_by_scenario"].values()) == 8
    assert (tmp_path / "out" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "out" / "verdict_records.jsonl").read_text().splitlines()
    assert len(lines) == 8 and "risk" in json.loads(lines[0])


def test_verdict_report_counts_what_is_flagged():
    records = [{"mismatch": True, "risk": 0.9, "scenario": "concealment", "undeclared_truth": ["tobacco"],
                "findings": [("undeclared", "tobacco")], "channel": "red"},
               {"mismatch": True, "risk": 0.2, "scenario": "missing", "undeclared_truth": [], "findings": [],
                "channel": "green"},
               {"mismatch": False, "risk": 0.1, "scenario": "clean", "undeclared_truth": [], "findings": [],
                "channel": "green"},
               {"mismatch": False, "risk": 0.6, "scenario": "clean", "undeclared_truth": [], "findings": [],
                "channel": "red"}]
    r = verdict_report(records, config=VerifierConfig(red=0.5))
    assert r["detection_rate"] == 0.5 and r["false_alarm_rate"] == 0.5 and r["roc_auc"] == 0.75
    assert r["concealed_cigarettes"] == {"scans": 1, "detected": 1.0, "named_tobacco": 1.0}
    assert r["flagged_by_scenario"]["clean"] == {"scans": 2, "flagged": 0.5}
    # each scan judged at its format's red threshold, and the figures given per format
    for rec, fmt in zip(records, ["single-8bit", "dual-16bit", "dual-16bit", "single-8bit"]):
        rec["scan_format"] = fmt
    config = VerifierConfig(red=0.5, by_format={"single-8bit": {"yellow": 0.5, "red": 0.7}})
    r = verdict_report(records, config=config)
    assert r["detection_rate"] == 0.5 and r["false_alarm_rate"] == 0.0
    assert r["by_format"]["single-8bit"] == {"scans": 2, "mismatches": 1, "red": 0.7, "own_thresholds": True,
                                             "detection_rate": 1.0, "false_alarm_rate": 0.0}
    assert r["by_format"]["dual-16bit"]["red"] == 0.5 and not r["by_format"]["dual-16bit"]["own_thresholds"]


def test_a_folder_without_truth_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="truth.jsonl"):
        labelled_scans(tmp_path, "test")
