"""The benchmark's bookkeeping: percentiles, ratios, the table and the files. Nothing here is timed."""

from __future__ import annotations

import json

import pytest

from benchmarks import report
from benchmarks.loadgen import drive
from benchmarks.stats import per_second, summarize


def stage(p50: float, n: int = 50) -> dict:
    return {"n": n, "mean": p50, "min": p50 / 2, "p50": p50, "p95": p50 * 1.5, "p99": p50 * 2, "max": p50 * 2}


def fake_results(**sections: dict) -> dict:
    engine = {"status": "ok", "n": 50,
              "decode_formats": {"scan": "40ft", "png_deflate": {"bytes": 5_500_000, "decode_ms": stage(60.0)}},
              "cpu": {"single_stream": {
                  "40ft": {"stages_ms": {"decode": stage(60.0), "preprocess": stage(20.0), "model": stage(90.0),
                                         "postprocess": stage(1.0), "verify": stage(0.5), "total": stage(200.0)},
                           "totals_ms": [190.0, 200.0, 210.0, 400.0]},
                  "20ft": {"stages_ms": {"total": stage(125.0)}, "totals_ms": [120.0, 125.0, 130.0]}},
                  "concurrent": [{"streams": 2, "scans_per_second": 6.5, "latency_ms": stage(300.0)}],
                  "detect_batch": [{"batch": 4, "batched_graph": False, "batch_ms": stage(400.0),
                                    "per_scan_ms": 100.0, "scans_per_second": 10.0}]},
              "cuda": {"skipped": "no CUDA here"}}
    http = {"status": "ok", "runs": [
        {"concurrency": 1, "requests": 4, "ok": 4, "rejected_503": 0, "errors": 0, "inspections_per_second": 4.0,
         "latency_ms": stage(250.0, 4), "latencies_ms": [240.0, 250.0, 260.0, 500.0],
         "server_decode_engine_ms": stage(180.0, 4)},
        {"concurrency": 16, "requests": 32, "ok": 20, "rejected_503": 12, "errors": 0,
         "inspections_per_second": 5.0, "latency_ms": stage(1500.0, 20)}]}
    models = {"status": "ok", "peer": {"params": 2_592_375}, "notes": ["eager PyTorch skipped: no checkpoint"],
              "scope": "model stage only",
              "rows": [{"input": [256, 768], "ours_onnx_ms": stage(20.0), "yolo11n_onnx_ms": stage(50.0)},
                       {"input": [512, 1536], "ours_onnx_ms": stage(80.0), "ours_eager_ms": stage(160.0),
                        "yolo11n_onnx_ms": stage(120.0)}]}
    accuracy = {"status": "ok", "data": "data/sim", "boxes": {"source": "model card, test split", "mAP50": 0.61,
                                                               "mAP": 0.402},
                "verdicts": {"scans": 510, "mismatches": 200, "detection_rate": 0.9, "false_alarm_rate": 0.012,
                             "roc_auc": 0.97, "calibrated_false_alarm": 0.01}}
    base = {"engine": engine, "http": http, "models": models, "accuracy": accuracy}
    base.update(sections)
    return {"date": "2026-11-22", "quick": False,
            "machine": {"cpu": "AMD EPYC 9654 96-Core Processor", "cores": 2, "memory_gb": 23.5,
                        "versions": {"onnxruntime": "1.32.0", "torch": "2.14.1"},
                        "onnxruntime_providers": ["CPUExecutionProvider"]},
            "model": {"name": "default", "family": "fcos_lite / mobilenet_v3_small", "params": 1_000_000,
                      "input": [256, 768]},
            "inputs": {"40ft": {"width": 2462, "height": 800, "png_bytes": 5_500_000}},
            "sections": base}


def test_summarize_percentiles_and_empty():
    s = summarize(range(1, 101))
    assert s["n"] == 100 and s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == pytest.approx(50.5) and s["p95"] == pytest.approx(95.05) and s["p99"] == pytest.approx(99.01)
    assert summarize([7.0]) == {"n": 1, "mean": 7.0, "min": 7.0, "p50": 7.0, "p95": 7.0, "p99": 7.0, "max": 7.0}
    assert summarize([])["n"] == 0 and summarize([])["p99"] is None
    assert per_second(10, 2.0) == 5.0 and per_second(3, 0.0) is None


def test_comparisons_are_ratios_of_the_right_rows():
    c = report.comparisons(fake_results())
    assert c["engine_40ft_p50_ms"] == 200.0 and c["engine_40ft_p99_ms"] == 400.0
    assert c["reference_over_engine_p50"] == 25.0 and c["reference_over_engine_p99"] == 12.5
    assert c["http_40ft_p50_ms"] == 250.0 and c["reference_over_http_p50"] == 20.0
    assert c["engine_over_yolo11n_512x1536"] == 1.67  # 200 ms engine total / 120 ms YOLO11n at 512 x 1536
    assert c["by_input"] == [{"input": [256, 768], "eager_over_onnx": None, "yolo11n_over_ours": 2.5},
                             {"input": [512, 1536], "eager_over_onnx": 2.0, "yolo11n_over_ours": 1.5}]


def test_markdown_table_rows():
    md = report.markdown(fake_results())
    assert "| **engine (CPU), total, 40ft** | 50 | **200** | 300 | **400** | 25.0× |" in md
    assert "| engine (CPU), model | 50 | 90.0 | 135 | 180 | |" in md
    assert "| **HTTP end to end, concurrency 1** | 4 | **250** | 375 | **500** | 20.0× |" in md
    assert "20 ok, 12 × 503, 0 errors of 32" in md
    assert "| engine detect_batch, batch 4, 40-ft, decode excluded (graph batch fixed at 1: one call per input) | " \
           "10.0 scans/s (100 ms per scan) |" in md
    assert "YOLO11n raw at 512×1536** | **1.67×** (goal ≤ 1.0×)" in md
    assert "decode + engine inside the service, p50 | 180 ms of 250 ms end to end |" in md
    assert "| 512×1536 | 80.0 | 160 | 120 | 1.5× |" in md and "| 256×768 | 20.0 | – | 50.0 | 2.5× |" in md
    assert "| box mAP@0.5 (model card, test split) | 0.610 |" in md and "| box mAP@0.5:0.95 | 0.402 |" in md
    assert "at the calibrated false-alarm rate 1.0% | 90.0% |" in md
    assert "CUDA: skipped — no CUDA here." in md
    assert "Note: eager PyTorch skipped: no checkpoint." in md


def test_markdown_rescore_row_and_its_quick_skip():
    rescored = {"scans": 200, "one_process": {"scans_per_s": 3.1}, "ray": {"scans_per_s": 2.9},
                "comparison": {"identical": 200}}
    md = report.markdown(fake_results(throughput={"status": "ok", "rescore": rescored}))
    assert "| archive re-scoring (`xray rescore`), 200 scans: one process / local Ray (2 actors) | 3.1 / 2.9 scans/s; " \
           "200 verdicts identical |" in md
    md = report.markdown(fake_results(throughput={"status": "ok", "rescore": {"status": "skipped in --quick"}}))
    assert "| archive re-scoring (`xray rescore`) | skipped in --quick |" in md


def test_markdown_names_a_crashed_section_instead_of_numbers():
    crashed = {"status": "error", "error": "RuntimeError: serve.py exited with 2"}
    md = report.markdown(fake_results(http=crashed, accuracy={"status": "error", "error": "DatasetError: x"}))
    assert "*http: error — RuntimeError: serve.py exited with 2*" in md
    assert "*accuracy: error — DatasetError: x*" in md
    assert "HTTP end to end" not in md
    assert report.comparisons(fake_results(http=crashed))["http_40ft_p50_ms"] is None


def test_write_names_files_by_date_and_machine(tmp_path):
    paths = report.write(fake_results(), tmp_path)
    assert paths["json"].name == "2026-11-22-2core-amd-epyc-9654.json"
    assert paths["markdown"].name == "2026-11-22-2core-amd-epyc-9654.md"
    assert paths["histogram"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["machine"]["cores"] == 2
    assert report.machine_slug({"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}) == "2core-intel-xeon"


def test_histogram_skipped_without_samples(tmp_path):
    assert report.histogram({"sections": {}}, tmp_path / "h.png") is False
    assert not (tmp_path / "h.png").exists()


def test_load_generator_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        drive("http://192.0.2.1:8000", b"", b"", "{}", api_key="k", concurrency=1, requests=1, timeout=1)


def test_http_goals_are_ratios_to_one_yolo11n_stream_with_batching_on_and_off():
    run = {"requests": 8, "ok": 8, "rejected_503": 0, "errors": 0}
    http = {"status": "ok", "batching": {"batch_window_ms": 5.0, "max_batch": 8},
            "runs": [{**run, "concurrency": 1, "inspections_per_second": 4.0, "latency_ms": stage(250.0)},
                     {**run, "concurrency": 4, "inspections_per_second": 12.5, "latency_ms": stage(300.0),
                      "mean_batch_size": 1.8}],
            "runs_batching_off": [{**run, "concurrency": 1, "inspections_per_second": 4.0, "latency_ms": stage(200.0)},
                                  {**run, "concurrency": 4, "inspections_per_second": 5.0, "latency_ms": stage(800.0)}]}
    g = report.comparisons(fake_results(http=http))["http_goals"]
    # YOLO11n at 512x1536: p50 120 ms -> 8.333 streams/s.
    assert g["yolo11n_p50_ms"] == 120.0 and g["yolo11n_stream_per_s"] == 8.333
    assert g["batching_on"] == {"c4_per_s": 12.5, "c1_p50_ms": 250.0, "c4_p99_ms": 600.0,
                                "c4_over_yolo11n_stream": 1.5, "c4_p99_over_c1_p50": 2.4, "c4_mean_batch_size": 1.8}
    assert g["batching_off"]["c4_over_yolo11n_stream"] == 0.6 and g["batching_off"]["c4_p99_over_c1_p50"] == 8.0
    md = report.markdown(fake_results(http=http))
    assert "| HTTP goals, 40-ft | batching on (window 5.0 ms, max 8) | batching off | goal |" in md
    assert "| ÷ one YOLO11n 512×1536 stream: 1000 / 120 ms = 8.3/s | 1.50× | 0.60× | ≥ 1.5× |" in md
    assert "| p99 at concurrency 4 ÷ p50 at concurrency 1 | 2.40× | 8.00× | ≤ 3.0× |" in md
    assert "| scans per engine batch at concurrency 4, mean | 1.80 | – (not batched) |  |" in md
    # Without the peer the rates are still shown, the ratio is not.
    no_peer = report.comparisons(fake_results(http=http, models={"status": "error", "error": "x"}))["http_goals"]
    assert no_peer["batching_on"]["c4_per_s"] == 12.5 and no_peer["batching_on"]["c4_over_yolo11n_stream"] is None


def test_markdown_int8_rows():
    def lat(fp32: float, int8: float, threads: int) -> dict:
        extra = {"cpu_median_ms": fp32 * 0.9} if threads == 1 else {}
        return {"fp32": {"median_ms": fp32, "threads": threads, **extra},
                "int8": {"median_ms": int8, "threads": threads, **({"cpu_median_ms": int8 * 0.9} if extra else {})}}

    int8 = {"status": "ok", "source": "cached",
            "calibration": {"scans": 150, "split": "val", "inputs": 300, "method": "minmax"},
            "model_only": {"engine_threads": lat(10.0, 8.0, 2), "one_thread": lat(12.0, 10.0, 1)},
            "engine_40ft": {k: {"total_ms": stage(v), "model_stage_ms": stage(v / 4)}
                            for k, v in (("fp32", 60.0), ("int8", 50.0))},
            "accuracy": {"data": "data/sim", "fp32": {"detection_rate": 0.955, "false_alarm_rate": 0.0097,
                                                      "roc_auc": 0.998},
                         "int8": {"detection_rate": 0.96, "false_alarm_rate": 0.013, "roc_auc": 0.9977}}}
    md = report.markdown(fake_results(int8=int8))
    assert "| model only, 2 threads, p50 ms | 10.0 | 8.0 | 1.25× |" in md
    assert "| model only, 1 thread, CPU ms | 10.8 | 9.0 | 1.20× |" in md
    assert "| engine total, p50 ms | 60.0 | 50.0 | 1.20× |" in md
    assert "| false alarms at the red threshold | 1.0% | 1.3% | |" in md
    assert "calibrated on 150 val scans (300 inputs, minmax)" in md
    assert "*int8: not run*" in report.markdown(fake_results())
    assert "*int8: skipped — no val split*" in report.markdown(fake_results(int8={"status": "ok",
                                                                                   "skipped": "no val split"}))


def test_archive_import_bench_damages_files_and_the_import_names_each(tmp_path) -> None:
    from benchmarks.archive_import import DAMAGE, run
    from xray.simulate.archive import generate_archive

    generate_archive(tmp_path / "src", count=12, seed=2, progress=False)
    r = run(tmp_path / "src", count=10, bad=0.5, work=tmp_path / "work", seed=0)
    assert r["damaged"] == 5 and sorted(v["damage"] for v in r["reasons"].values()) == sorted(DAMAGE)
    assert r["exit_code"] == 0 and not r["traceback"]
    assert r["imported"] == 5 and r["damaged_in_report"] == 5 and r["damaged_named_in_summary"] == 5
    assert all(v["reason"] for v in r["reasons"].values())


def test_accuracy_measures_a_model_on_the_scanners_it_was_trained_on(tmp_path) -> None:
    from fixtures_dataset import write_dataset

    from benchmarks.accuracy import held_out_data

    data = write_dataset(tmp_path / "trained-on", splits={"test": 2}, seed=4)
    model = tmp_path / "model"
    model.mkdir()
    card = {"training": {"data": {"path": str(data), "profiles": ["export-8bit-jpeg"]}}}
    (model / "model.json").write_text(json.dumps(card))
    assert held_out_data(tmp_path / "cache", quick=True, model_dir=model)[0] == data
    # its training data is not here: test scans simulated with the card's profiles, never another look
    card["training"]["data"]["path"] = str(tmp_path / "gone")
    (model / "model.json").write_text(json.dumps(card))
    root, about = held_out_data(tmp_path / "cache", quick=True, model_dir=model)
    assert "export-8bit-jpeg" in about
    info = json.loads((root / "dataset.json").read_text())
    assert info["params"]["profiles"] == ["export-8bit-jpeg"] and info["splits"]["test"] == 16


def test_held_out_figures_are_recorded_in_the_card_and_a_quick_run_never_is(tmp_path) -> None:
    from benchmarks.__main__ import main
    from benchmarks.holdout import record_in_card

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"name": "m", "classes": ["tobacco"]}))
    result = {"status": "ok", "seconds": 3.0, "holdout_profile": "mobile-gantry", "scans": 300,
              "at_5pct_false_alarms": {"detection_rate": 0.3, "false_alarm_rate": 0.05}, "roc_auc": 0.79}
    record_in_card(model, result, date="2026-11-29", commit="abc1234")
    card = json.loads((model / "model.json").read_text())
    assert card["name"] == "m" and card["holdout"]["roc_auc"] == 0.79 and card["holdout"]["scans"] == 300
    assert card["holdout"]["measured"] == "2026-11-29" and "status" not in card["holdout"]
    assert main(["--model", str(model), "--quick", "--record-holdout"]) == 2


def test_the_peer_venv_is_not_built_on_a_nearly_full_disk(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from benchmarks import peer

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100 * 1024**3, 98 * 1024**3, 2 * 1024**3))
    ran = []
    monkeypatch.setattr(peer.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(RuntimeError, match=r"2\.0 GB is free"):
        peer.ensure_peer_venv(tmp_path / "venv")
    assert ran == [] and not (tmp_path / "venv").exists()


def test_report_shows_the_held_out_profile_by_scenario() -> None:
    holdout = {"status": "ok", "holdout_profile": "mobile-gantry", "scans": 300, "mismatches": 110,
               "at_5pct_false_alarms": {"threshold": 0.6, "detection_rate": 0.727, "false_alarm_rate": 0.047},
               "roc_auc": 0.928, "ood_flagged": 0.69, "guard": "calibrated",
               "by_scenario": {"clean": {"scans": 157, "flagged": 0.06},
                               "concealment": {"scans": 43, "flagged": 0.4}}}
    md = report.markdown(fake_results(holdout=holdout))
    assert "| concealment | 43 | 40.0% |" in md and "| clean | 157 | 6.0% |" in md
    del holdout["by_scenario"]  # a result recorded before the breakdown existed still renders
    assert "concealment" not in report.markdown(fake_results(holdout=holdout))
