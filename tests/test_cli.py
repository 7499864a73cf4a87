"""The `xray` command: one parser with modes, real runs of inspect, evaluate --level scan and dataset check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from fixtures_dataset import write_dataset

from xray import bundled
from xray.cli import MODES, build_parser, main


def test_help_lists_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for mode in ("train", "evaluate", "calibrate", "export", "inspect", "serve", "simulate", "dataset"):
        assert f"    {mode} " in out, mode


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_has_its_own_help(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([mode, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: xray {mode}")


def test_unknown_mode_and_missing_required_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["predict"], ["inspect", "scan.png"], ["evaluate", "--level", "pixel", "--model", "m", "--data", "d"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
    assert "invalid choice: 'pixel'" in capsys.readouterr().err


def test_evaluate_levels_parse() -> None:
    parser = build_parser()
    base = ["evaluate", "--model", "m", "--data", "d"]
    assert parser.parse_args(base).level is None  # box, the default
    assert parser.parse_args([*base, "--level", "scan"]).level == "scan"
    assert parser.parse_args([*base, "--verdicts"]).level == "scan"  # the deprecated spelling
    train = parser.parse_args(["train", "--data", "d", "--out", "o", "--batch-size", "2", "--resume"])
    assert (train.batch_size, train.resume, train.model) == (2, True, "models/xray_s.yaml")


def test_options_of_the_other_level_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--level", "scan", "--model", "m", "--data", "d", "--device", "cuda"]) == 2
    assert "--device: box-level options, not for --level scan" in capsys.readouterr().err
    assert main(["evaluate", "--model", "m.pt", "--data", "d", "--limit", "3"]) == 2
    assert "--limit: a scan-level option" in capsys.readouterr().err


def test_inspect_prints_a_verdict_and_writes_the_overlay(tiny_model_dir: Path, scan_files, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = scan_files[0]
    overlay = tmp_path / "overlay.png"
    assert main(["inspect", str(f.high), "--low", str(f.low), "--manifest", str(f.manifest),
                 "--model", str(tiny_model_dir), "--overlay", str(overlay), "--threads", "1"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["channel"] in ("green", "yellow", "red")
    assert verdict["verdict"] in ("match", "mismatch", "inconclusive")
    picture = cv2.imread(str(overlay))
    assert picture is not None and picture.shape[1] >= cv2.imread(str(f.high), cv2.IMREAD_UNCHANGED).shape[1]


def test_inspect_reports_a_missing_manifest_without_a_traceback(tiny_model_dir: Path, scan_files, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(scan_files[0].high), "--manifest", str(tmp_path / "none.json"),
                 "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xray inspect: error:") and "none.json" in err and "Traceback" not in err


def test_evaluate_level_scan_reports_every_scan_of_the_split(tiny_model_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "ds", splits={"test": 3}, seed=5)
    truth = [json.loads(line) for line in (data / "truth.jsonl").read_text().splitlines()]
    truth[0].update(mismatch=True, scenario="concealment")  # both classes, so the ROC is defined
    (data / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    assert main(["evaluate", "--level", "scan", "--model", str(tiny_model_dir), "--data", str(data),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scans"] == 3 and report["split"] == "test" and report["mismatches"] == 1
    assert json.loads((tmp_path / "out" / "verdicts.json").read_text())["scans"] == 3


def test_evaluate_level_scan_needs_truth(tiny_model_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "ds", splits={"test": 1})
    (data / "truth.jsonl").unlink()
    assert main(["evaluate", "--verdicts", "--model", str(tiny_model_dir), "--data", str(data), "--quiet"]) == 2
    assert "truth.jsonl" in capsys.readouterr().err


def test_dataset_check_counts_scans_and_boxes_per_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "ds", splits={"train": 3, "val": 2})
    assert main(["dataset", "check", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: v["scans"] for k, v in report["splits"].items()} == {"train": 3, "val": 2}
    coco = json.loads((data / "annotations" / "train.json").read_text())
    assert report["splits"]["train"]["boxes"] == len(coco["annotations"])
    assert report["splits"]["train"]["dual_energy"] == 3 and report["splits"]["val"]["with_truth"] == 2


def test_dataset_check_names_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "ds", splits={"train": 2})
    (data / "images" / "train" / "s000002_low.png").unlink()
    assert main(["dataset", "check", str(data)]) == 2
    assert "s000002_low.png: missing" in capsys.readouterr().err
    assert main(["dataset", "check", str(tmp_path / "empty")]) == 2
    assert "not an xray dataset" in capsys.readouterr().err


def test_serve_names_an_out_of_range_batching_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--batch-window-ms", "-1", "--data-dir", str(tmp_path / "data")]) == 2
    assert "batch_window_ms" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_serve_refuses_a_folder_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 2
    assert "no model.onnx" in capsys.readouterr().err


def test_help_and_the_dataset_reader_do_not_load_torch() -> None:
    code = ("import sys; from xray.cli import build_parser; build_parser(); import xray.data.format; "
            "import xray.sources.files; print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_bundled_model_is_found_in_the_package_then_the_checkout_then_the_prefix(tmp_path: Path) -> None:
    package, checkout, prefix = tmp_path / "pkg", tmp_path / "checkout", tmp_path / "prefix"
    folders = bundled.candidate_model_dirs(prefixes=(str(tmp_path / "p"),))
    assert folders[:2] == [bundled.PACKAGE_DIR / "models" / "default", bundled.CHECKOUT_DIR]
    assert folders[2] == tmp_path / "p" / "share" / "xray" / "models" / "default"
    folders = [package, checkout, prefix]
    assert bundled.default_model_dir(folders) == bundled.CHECKOUT_DIR  # none holds a model: name where to make one
    for folder in (prefix, checkout, package):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"onnx")
        assert bundled.default_model_dir(folders) == folder


def test_bundled_model_candidates_cover_an_installed_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = tmp_path / "share" / "xray" / "models" / "default"
    installed.mkdir(parents=True)
    (installed / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(bundled, "PACKAGE_DIR", tmp_path / "site-packages" / "xray")
    monkeypatch.setattr(bundled, "CHECKOUT_DIR", tmp_path / "no-checkout")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))
    assert bundled.default_model_dir() == installed


def test_dataset_import_archive_mode_reports_bad_files(tmp_path, capsys) -> None:
    import pathlib

    import cv2
    import numpy as np

    from xray.cli import main

    scans = tmp_path / "scans"
    scans.mkdir()
    rows = ["file,container_id,hs_codes"]
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(scans / f"s{i}.png"), rng.integers(0, 255, (64, 192), dtype=np.uint8))
        rows.append(f"s{i}.png,CONT{i:04d},{'8703' if i % 2 else '2402'}")
    (scans / "s7.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ds"
    assert main(["dataset", "import", "archive", "--scans", str(scans), "--table", str(tmp_path / "table.csv"),
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "s7.png" in printed
    report = json.loads((out / "import_report.json").read_text())
    assert report["imported"] == 7 and sum(report["splits"].values()) == 7
    assert [(pathlib.Path(s["file"]).name, "PNG" in s["reason"]) for s in report["skipped"]] == [("s7.png", True)]
    assert main(["dataset", "check", str(out)]) == 0


def test_box_evaluation_of_an_exported_model_names_what_it_takes(tiny_model_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`--level box` reads a training checkpoint; an exported folder or its model.onnx is refused by name."""
    from fixtures_dataset import write_dataset

    data = write_dataset(tmp_path / "ds", splits={"test": 1})
    for model in (tiny_model_dir, tiny_model_dir / "model.onnx"):
        assert main(["evaluate", "--level", "box", "--model", str(model), "--data", str(data), "--split", "test"]) == 2
        err = capsys.readouterr().err
        assert f"{model}: cannot read checkpoint (an exported model" in err and "Traceback" not in err
