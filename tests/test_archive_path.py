"""The README's archive path end to end, through the `xray` command only, on a tiny stand-in:
simulate --archive -> dataset import -> train (stage 1, then stage 2 from its weights) ->
export -> calibrate --swap -> evaluate --swap -> serve one inspection.

The only file written by hand is what a site writes: the declarations table (here the
stand-in's own) — plus, for speed, two small config files on top of the shipped ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from xray.cli import main

MODELS = Path(__file__).resolve().parents[1] / "models"
# The shipped configs, shrunk so that one epoch on ~20 scans takes seconds.
SMALL = """version: 1
_base_: {base}
model: {{width: 0.25, channels: 16}}
input: {{size: {size}}}
train: {{epochs: 1, batch_size: 2, workers: 0, warmup_iters: 2}}
"""


@pytest.fixture(scope="module")
def archive_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archive-path")
    src, data, model = root / "archive", root / "site", root / "model"
    assert main(["simulate", "--archive", "--out", str(src), "--count", "36", "--seed", "3",
                 "--wrong-declarations", "0.1", "--workers", "1", "--quiet"]) == 0
    assert main(["dataset", "import", "archive", "--scans", str(src / "scans"), "--table",
                 str(src / "declarations.csv"), "--out", str(data), "--splits", "0.5", "0.2", "0.3", "--quiet"]) == 0
    low, full = root / "lowres.yaml", root / "full.yaml"
    low.write_text(SMALL.format(base=MODELS / "archive_s-lowres.yaml", size="[96, 320]"))
    full.write_text(SMALL.format(base=MODELS / "archive_s.yaml", size="[160, 512]"))
    common = ["--data", str(data), "--device", "cpu", "--threads", "2", "--no-progress"]
    assert main(["train", *common, "--model", str(low), "--out", str(root / "run-lowres")]) == 0
    assert main(["train", *common, "--model", str(full), "--out", str(root / "run"),
                 "--init", str(root / "run-lowres" / "best.pt")]) == 0
    assert main(["export", str(root / "run" / "best.pt"), "--out", str(model), "--data", str(data),
                 "--split", "val", "--latency-runs", "2"]) == 0
    assert main(["calibrate", "--swap", "--model", str(model), "--data", str(data), "--split", "val",
                 "--false-alarm", "0.05"]) == 0
    assert main(["evaluate", "--swap", "--model", str(model), "--data", str(data), "--split", "test",
                 "--archive-truth", str(src / "truth_loaded.csv"), "--out", str(root / "swap"), "--quiet"]) == 0
    return {"src": src, "data": data, "model": model, "run": root / "run", "swap": root / "swap"}


def test_stage_two_starts_from_stage_one_at_full_size(archive_run: dict[str, Path]) -> None:
    import torch

    ckpt = torch.load(archive_run["run"] / "last.pt", weights_only=False)
    assert ckpt["config"]["init"]["from"].endswith("run-lowres/best.pt")
    assert list(ckpt["config"]["input"]["size"]) == [160, 512]
    assert ckpt["config"]["model"]["loss"] == "bootstrap"


def test_the_exported_model_is_calibrated_and_its_swap_report_has_both_views(archive_run: dict[str, Path]) -> None:
    from xray.calibration import SWAP_RULES

    card = json.loads((archive_run["model"] / "model.json").read_text())
    assert card["input"]["mode"] == "single" and card["input"]["size"] == [160, 512]
    # calibrate --swap chose the risk rule with the most swaps detected on val (then AUC), and stored it.
    cal = card["calibration"]
    assert len(cal["risk_rules"]) == len(SWAP_RULES) and cal["risk_rule"] in cal["risk_rules"]
    best = max(cal["risk_rules"].values(), key=lambda r: (r["detection_rate"], r["roc_auc"] or 0.0))
    assert cal["risk_rules"][cal["risk_rule"]] == best
    combine, declared_rule = cal["risk_rule"].split("+")
    assert card["verifier"]["combine"] == combine and card["verifier"]["declared_rule"] == declared_rule
    report = json.loads((archive_run["swap"] / "swap.json").read_text())
    assert set(report["scorers"]) == {"model", "baseline"}
    for m in report["scorers"].values():
        assert 0.0 <= m["roc_auc"] <= 1.0
        assert m["verified"]["pairs"] + m["verified"]["excluded_wrong_declarations"] == report["pairs"]
    assert "baseline" in report["conclusion"]


def test_the_model_serves_an_archive_scan(archive_run: dict[str, Path], tmp_path: Path, live_server) -> None:
    from xray.data.format import split_records
    from xray.service import Settings, create_app

    record = split_records(archive_run["data"], "test")[0]
    app = create_app(Settings(data_dir=tmp_path, model_dir=archive_run["model"], auth=False, host="127.0.0.1"))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/v1/inspections", files={"scan": (record.high.name, record.high.read_bytes(), "image/jpeg")},
                        data={"manifest": Path(record.manifest_path).read_text()})
        assert r.status_code == 201, r.text
        verdict = r.json()
        assert verdict["channel"] in ("green", "yellow", "red")
        again = client.get(f"/v1/inspections/{verdict['inspection_id']}")
        assert again.status_code == 200 and again.json()["channel"] == verdict["channel"]


def test_the_readme_gives_each_step_of_this_path() -> None:
    readme = (MODELS.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Training on your own archive", 1)[1].split("\n## ", 1)[0]
    steps = ["xray simulate --archive", "xray dataset import archive", "--model models/archive_s-lowres.yaml",
             "--model models/archive_s.yaml --init", "xray export", "xray calibrate --swap", "xray evaluate --swap",
             "xray serve --model"]
    at = [section.find(s) for s in steps]
    assert -1 not in at, [s for s, i in zip(steps, at) if i < 0]
    assert at == sorted(at)  # in the order a site runs them
