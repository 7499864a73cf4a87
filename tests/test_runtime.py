"""Execution providers: auto picks the best one onnxruntime offers, an explicit one that is
missing (or that onnxruntime silently drops) is our error naming it."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from xray import runtime
from xray.cli import main
from xray.config import ExecutionConfig
from xray.engine import Engine
from xray.errors import ConfigError
from xray.runtime import CPU, CUDA, TENSORRT, create_session, provider_entries
from xray.service.settings import Settings

GPU = CUDA in ort.get_available_providers()


def test_auto_prefers_cuda_and_never_picks_tensorrt_by_itself() -> None:
    auto = ExecutionConfig()
    assert provider_entries(auto, [CPU]) == [CPU]
    assert provider_entries(auto, [TENSORRT, CUDA, CPU]) == [(CUDA, {"device_id": 0}), CPU]
    assert provider_entries(ExecutionConfig(provider="cpu"), [CUDA, CPU]) == [CPU]


def test_tensorrt_gets_fp16_and_its_engine_cache(tmp_path: Path) -> None:
    cache = tmp_path / "trt"
    entries = provider_entries(ExecutionConfig(provider="tensorrt", fp16=True, trt_cache=cache, device_id=1),
                               [TENSORRT, CUDA, CPU])
    assert [e[0] if isinstance(e, tuple) else e for e in entries] == [TENSORRT, CUDA, CPU]
    trt = entries[0][1]
    assert trt["trt_fp16_enable"] is True and trt["device_id"] == 1
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"] == str(cache)
    assert cache.is_dir()


@pytest.mark.parametrize("provider, name", [("cuda", CUDA), ("tensorrt", TENSORRT)])
def test_explicit_provider_that_is_missing_is_our_error(provider: str, name: str) -> None:
    with pytest.raises(ConfigError, match=f"'{provider}' \\({name}\\) is not available"):
        provider_entries(ExecutionConfig(provider=provider), [CPU])


@pytest.mark.skipif(GPU, reason="this machine's onnxruntime has CUDA")
def test_engine_on_this_cpu_machine(tiny_model_dir: Path) -> None:
    assert Engine(tiny_model_dir, threads=1).providers[0] == CPU  # auto
    with pytest.raises(ConfigError, match="CUDAExecutionProvider"):
        Engine(tiny_model_dir, threads=1, execution=ExecutionConfig(provider="cuda"))


def test_a_provider_onnxruntime_drops_on_its_own_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """onnxruntime-gpu lists CUDA even without the CUDA libraries, then quietly runs on the CPU."""

    class FallenBack:
        def __init__(self, path: str, options: object, providers: list) -> None:
            self.asked = providers

        def get_providers(self) -> list[str]:
            return [CPU]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FallenBack)
    monkeypatch.setattr(ort, "preload_dlls", lambda: None, raising=False)
    with pytest.raises(ConfigError, match="'cuda' .* could not start"):
        create_session(tmp_path / "m.onnx", execution=ExecutionConfig(provider="cuda"))
    assert create_session(tmp_path / "m.onnx").get_providers() == [CPU]  # auto may fall back
    assert runtime.active_provider(create_session(tmp_path / "m.onnx")) == CPU


@pytest.mark.skipif(GPU, reason="this machine's onnxruntime has CUDA")
def test_inspect_with_a_missing_provider_fails_cleanly(scan_files, tiny_model_dir: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    f = scan_files[0]
    assert main(["inspect", str(f.high), "--low", str(f.low), "--manifest", str(f.manifest),
                 "--model", str(tiny_model_dir), "--provider", "tensorrt"]) == 2
    assert "TensorrtExecutionProvider" in capsys.readouterr().err


def test_service_settings_take_the_provider_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_EXECUTION__PROVIDER", "cuda")
    monkeypatch.setenv("XRAY_EXECUTION__TRT_CACHE", "/tmp/trt")
    s = Settings()
    assert s.execution.provider == "cuda" and s.execution.trt_cache == Path("/tmp/trt")


def test_sessions_share_one_set_of_options_with_idle_threads_asleep(tiny_model_dir: Path) -> None:
    so = runtime.session_options(threads=2)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A spinning intra-op pool would hold a core after each run, against the next scan's decoding.
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    engine = Engine(tiny_model_dir, threads=1)
    assert engine.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
