"""Export to ONNX with the model card, and the parity check that guards it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_dataset import write_dataset

from xray.data.dataset import read_scan
from xray.export import (
    ParityError,
    export,
    export_main,
    ort_session,
    parity_check,
    parity_inputs,
    raw_parity_check,
)
from xray.model import model_from_checkpoint
from xray.model.preprocess import InputSpec, preprocess
from xray.train import loop

torch.set_num_threads(2)
TINY = Path(__file__).resolve().parents[1] / "models" / "tiny.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("export")
    data = write_dataset(base / "ds", splits={"train": 4, "val": 2}, seed=5)
    loop.fit(data=data, config=TINY, out=base / "run", epochs=2, device="cpu", progress=False, plots=False)
    return data, base / "run" / "best.pt"


def test_export_writes_model_and_card(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    card = export(ckpt, tmp_path / "m", data=data, split="val")
    assert (tmp_path / "m" / "model.onnx").is_file()
    on_disk = json.loads((tmp_path / "m" / "model.json").read_text())
    assert on_disk["sha256"] == card["sha256"]
    assert on_disk["classes"][0] == "tobacco" and len(on_disk["classes"]) == 13
    assert on_disk["input"]["mode"] == "dual_ratio" and on_disk["input_format"]["channels"] == 3
    assert InputSpec.from_dict(on_disk["input"]) == InputSpec.from_dict(_stored_input(ckpt))  # the engine reads it back
    assert on_disk["input"]["size"] == [128, 384] and len(on_disk["input"]["mean"]) == 3
    assert set(on_disk["score_thresholds"]) == set(on_disk["classes"])
    assert on_disk["metrics"]["val"]["data"]["split"] == "val" and "mAP50" in on_disk["metrics"]["val"]
    # The split given to export is evaluated into the card, with the data it was measured on.
    assert on_disk["metrics"]["val"]["data"]["path"] == str(data) and "per_class" in on_disk["metrics"]["val"]
    assert on_disk["export"]["parity"]["passed"] and on_disk["export"]["parity"]["inputs"] == 2
    assert on_disk["export"]["parity"]["raw"]["max_prob_diff"] <= 1e-4
    assert not (tmp_path / "m" / "raw_parity.onnx").exists()
    for lib in ("torch", "torchvision", "onnx", "onnxruntime"):
        assert lib in on_disk["versions"]
    assert "git_commit" in on_disk and on_disk["training"]["config"]["model"]["name"] == "fcos_lite"
    # what it was trained on: the training data, not the split export measured
    assert on_disk["training"]["data"]["path"] == str(data) and "split" not in on_disk["training"]["data"]
    # Beside the graph, the weights a later stage starts from (`xray train --init`): the checkpoint's own.
    assert on_disk["weights"] == {"file": "weights.pt", "size_bytes": (tmp_path / "m" / "weights.pt").stat().st_size,
                                  "freeze_bn": False}
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=False)
    best = torch.load(ckpt, weights_only=False)
    assert "optimizer" not in weights and weights["classes"] == best["classes"] and weights["config"] == best["config"]
    assert all(torch.equal(weights["model"][k], v) for k, v in best["model"].items())


def test_the_card_names_the_scanner_profiles_a_model_was_trained_on() -> None:
    from xray.card import training_data

    info = {"path": "data/sim-realistic", "params": {"seed": 2026, "profiles": ["portal-dual-16bit", "pseudo-colour"]}}
    assert training_data({"data": info})["profiles"] == ["portal-dual-16bit", "pseudo-colour"]
    # checkpoints written before "data" was stored: the data their validation figures name
    older = training_data({"metrics_data": {**info, "split": "val"}})
    assert older["profiles"] == ["portal-dual-16bit", "pseudo-colour"] and "split" not in older
    assert training_data({"metrics_data": None}) is None


def _stored_input(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=False)["config"]["input"]


def test_onnx_matches_torch_on_a_scan(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    export(ckpt, tmp_path / "m")  # synthetic parity inputs, two input sizes
    model, c = model_from_checkpoint(ckpt)
    spec = InputSpec.from_dict(c["config"]["input"])
    entry = json.loads((data / "annotations" / "val.json").read_text())["images"][0]
    x, _ = preprocess(read_scan(data, entry), spec)
    session = ort_session(tmp_path / "m" / "model.onnx")
    boxes, scores, labels, image_scores = session.run(None, {"input": x[None]})
    with torch.no_grad():
        ref = model(torch.from_numpy(x[None]))[0]
    assert boxes.shape == (len(scores), 4) and labels.dtype == np.int64
    assert np.allclose(image_scores, ref["image_scores"].numpy(), atol=1e-4)
    assert len(ref["scores"]) > 0  # an untrained-ish model still scores above the 0.05 floor
    top = ref["scores"].numpy() > ref["scores"].numpy().min() + 1e-3  # clear of the top-k cut-off
    for box, score, label in zip(ref["boxes"].numpy()[top], ref["scores"].numpy()[top], ref["labels"].numpy()[top]):
        close = (labels == label) & (np.abs(scores - score) < 1e-4) & (np.abs(boxes - box).max(axis=1) < 0.5)
        assert close.any()


def test_parity_check_catches_a_wrong_export(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = trained
    export(ckpt, tmp_path / "m")
    model, c = model_from_checkpoint(ckpt)
    spec = InputSpec.from_dict(c["config"]["input"])
    inputs = parity_inputs(spec, n=2)
    parity_check(model, tmp_path / "m" / "model.onnx", inputs)  # the honest pair passes
    with torch.no_grad():
        model.head.bbox_reg.bias += 0.5  # boxes grow by half a stride: the ONNX file no longer matches
    with pytest.raises(ParityError, match="differs from torch"):
        parity_check(model, tmp_path / "m" / "model.onnx", inputs)


def test_raw_parity_check(trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ckpt = trained
    model, c = model_from_checkpoint(ckpt)
    inputs = parity_inputs(InputSpec.from_dict(c["config"]["input"]), n=2)
    report = raw_parity_check(model, inputs, tmp_path)
    assert report["max_prob_diff"] <= 1e-4 and report["max_box_side_diff_px"] <= 0.5
    # An ONNX runtime that drifts by 1e-3 in probability is caught.
    import xray.export as ex

    real = ex.ort_session

    class Drifting:
        def __init__(self, path):
            self.s = real(path)

        def run(self, names, feeds):
            return [o + 1e-3 for o in self.s.run(names, feeds)]

    monkeypatch.setattr(ex, "ort_session", Drifting)
    with pytest.raises(ParityError, match="raw ONNX head outputs differ"):
        raw_parity_check(model, inputs, tmp_path)


def test_export_command(trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, ckpt = trained
    assert export_main([str(ckpt), "--out", str(tmp_path / "cli"), "--parity-n", "2"]) == 0
    assert "parity passed" in capsys.readouterr().out
    assert export_main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == 2


def test_dynamic_input_size(trained: tuple[Path, Path], tmp_path: Path) -> None:
    # Boxes reaching past the image edges are clipped to the size of the actual input,
    # not to the size the graph was exported at.
    _, ckpt = trained
    model, c = model_from_checkpoint(ckpt)
    with torch.no_grad():
        model.head.bbox_reg.bias += 5.0  # every box 5 strides past its point on each side
    spec = InputSpec.from_dict(c["config"]["input"])
    from xray.export import export_onnx

    export_onnx(model, tmp_path / "big_boxes.onnx", input_size=spec.size, channels=spec.channels)
    small = parity_inputs(spec, n=1)  # one input, smaller than the export size
    assert small[0].shape[1:] != tuple(spec.size)
    session = ort_session(tmp_path / "big_boxes.onnx")
    boxes = session.run(None, {"input": small[0][None]})[0]
    h, w = small[0].shape[1:]
    assert len(boxes) and boxes[:, 2].max() == pytest.approx(w) and boxes[:, 3].max() == pytest.approx(h)
    with torch.no_grad():
        ref = model(torch.from_numpy(small[0][None]))[0]["boxes"]
    assert ref[:, 2].max().item() == pytest.approx(w) and ref[:, 3].max().item() == pytest.approx(h)
