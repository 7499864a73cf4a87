"""The benchmark's GPU rows: run where the provider is offered and starts, "skipped: no GPU" otherwise."""

from __future__ import annotations

from pathlib import Path

from test_benchmarks import fake_results

from benchmarks import providers, report
from xray.errors import ConfigError
from xray.runtime import CPU, CUDA, TENSORRT


def test_gpu_rows_skip_without_a_gpu(tmp_path: Path) -> None:
    ran: list[str] = []
    out = providers.run(lambda e: ran.append(e.provider) or {}, cache=tmp_path, quick=True, available=[CPU])
    assert ran == []
    assert out["cuda"]["skipped"].startswith("no GPU: this onnxruntime offers no CUDAExecutionProvider")
    assert out["tensorrt"]["skipped"].startswith("no GPU: this onnxruntime offers no TensorrtExecutionProvider")


def test_gpu_rows_run_where_offered_and_name_a_provider_that_cannot_start(tmp_path: Path) -> None:
    def run_provider(execution):
        if execution.provider == "tensorrt":
            assert execution.trt_cache == tmp_path / "tensorrt"
            raise ConfigError("execution provider 'tensorrt' could not start")
        return {"provider": CUDA, "single_stream": {}}

    out = providers.run(run_provider, cache=tmp_path, quick=True, available=[TENSORRT, CUDA, CPU])
    assert out["cuda"]["provider"] == CUDA
    assert out["tensorrt"] == {"skipped": "no GPU: execution provider 'tensorrt' could not start"}


def test_batch_rows_say_when_the_graph_takes_batch_1(tiny_engine) -> None:
    assert "batch 1 only" in providers.batch_rows(tiny_engine, quick=True)["skipped"]


def test_report_shows_gpu_rows_and_skips() -> None:
    results = fake_results()
    engine = results["sections"]["engine"]
    total = {"n": 50, "p50": 9.0, "p95": 10.0, "p99": 11.0}
    engine["cuda"] = {"provider": CUDA, "single_stream": {"40ft": {"stages_ms": {"total": total}}},
                      "concurrent": [{"streams": 4, "scans_per_second": 200.0, "latency_ms": total}],
                      "model_batches": {"rows": [{"batch": 8, "run_ms": total, "scans_per_second": 888.9}]}}
    engine["tensorrt"] = {"skipped": "no GPU: this onnxruntime offers no TensorrtExecutionProvider"}
    md = report.markdown(results)
    assert "| engine (CUDA), total, 40ft | 50 | 9.0 |" in md
    assert "| model stage only (CUDA), batch 8, no decode | 888.9 scans/s" in md
    assert "TensorRT: skipped — no GPU: this onnxruntime offers no TensorrtExecutionProvider." in md
