"""INT8 quantisation of an exported model: the card, the engine running it, outputs near FP32's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_dataset import write_dataset

from xray.calibration import install_feature_output
from xray.cli import main
from xray.data.dataset import XrayDataset
from xray.detection import box_iou
from xray.engine import Engine
from xray.errors import ConfigError
from xray.quantize import quantize_model, select_nodes


@pytest.fixture(scope="module")
def fp32(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model with the domain guard's `features` output (as the bundled model has), and a
    dataset whose val split calibrates and whose test split is compared on."""
    base = tmp_path_factory.mktemp("int8")
    data = write_dataset(base / "ds", splits={"val": 3, "test": 2}, seed=21)
    model = base / "fp32"
    shutil.copytree(tiny_model_dir, model)
    scans = XrayDataset(data, "val", spec=Engine(model).spec, image_labels="none")
    install_feature_output(model, [scans.scan(0)])
    return model, data


@pytest.fixture(scope="module")
def int8(fp32: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, data = fp32
    out = tmp_path_factory.mktemp("int8-model") / "tiny-int8"
    assert main(["quantize", str(model), "--out", str(out), "--data", str(data), "--scans", "2",
                 "--latency-runs", "2"]) == 0
    return out


def test_card_records_precision_and_calibration(fp32: tuple[Path, Path], int8: Path) -> None:
    model, data = fp32
    card = json.loads((int8 / "model.json").read_text())
    source = json.loads((model / "model.json").read_text())
    assert card["precision"] == "int8" and "precision" not in source
    q = card["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] is True and q["nodes_quantised"] > 0
    cal = q["calibration"]
    assert (cal["data"]["path"], cal["data"]["split"], cal["scans"], cal["method"]) == (str(data), "val", 2, "minmax")
    assert cal["inputs"] == 2 * (2 if source.get("engine", {}).get("flip") else 1)
    assert q["source"]["sha256"] == source["sha256"] and card["sha256"] != source["sha256"]
    lat = q["latency"]
    assert lat["fp32"]["runs"] == lat["int8"]["runs"] == 2 and lat["speedup_median"] > 0
    assert q["fidelity"]["scans"] == 1  # the val scan after the two calibration scans
    # What the engine reads is the FP32 card's.
    for key in ("classes", "input", "score_thresholds", "outputs"):
        assert card[key] == source[key], key
    # The graph is int8: QDQ nodes around quantised weights.
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_engine_runs_int8_with_fp32_outputs(fp32: tuple[Path, Path], int8: Path) -> None:
    model, data = fp32
    a, b = Engine(model, threads=1), Engine(int8, threads=1)
    assert b.output_names == a.output_names and "features" in b.output_names
    scans = XrayDataset(data, "test", spec=a.spec, image_labels="none")
    for i in range(len(scans)):
        scan = scans.scan(i)
        x = a.model_inputs(scan)[0].x
        ra, rb = a._run(x), b._run(x)
        assert np.abs(ra["image_scores"] - rb["image_scores"]).max() < 0.05
        fa, fb = ra["features"].ravel(), rb["features"].ravel()
        assert fa @ fb / (np.linalg.norm(fa) * np.linalg.norm(fb)) > 0.97
        found, ref = b.detect(scan), a.detect(scan)  # the whole engine path, mirrored pass included
        assert found.image_scores.keys() == set(b.classes) and found.model_id == "tiny-int8"
        # Detections clear of the score floor by more than INT8's error (the 0.05 allowed the image
        # scores) are found both ways; those nearer it may fall either side. The tiny model's boxes
        # mostly sit just above the floor, so their count alone says nothing (30 FP32 against 6 INT8
        # on one machine, within 1 on another).
        floor = a.min_score + 0.05
        assert all(d.score >= b.min_score for d in found.detections)
        for these, those in ((ref.detections, found.detections), (found.detections, ref.detections)):
            for d in these:
                if d.score >= floor:
                    assert any(o.category == d.category and box_iou(np.array([d.box]), np.array([o.box]))[0, 0] >= 0.5
                               for o in those), d


def test_node_selection(fp32: tuple[Path, Path]) -> None:
    model, _ = fp32
    onnx_path = model / "model.onnx"
    ops, chosen, skip = select_nodes(onnx_path)
    assert "Mul" in ops and all(n.startswith(("/model/backbone/", "/model/head/", "/model/image_head/")) for n in chosen)
    assert any(n.startswith("/model/backbone/body/body.0/") for n in skip)  # the stem stays float
    assert not any(n.startswith("/model/backbone/body/body.0/") for n in chosen)
    ops, chosen, skip = select_nodes(onnx_path, ops="conv", exclude=["first"], float_activations=False)
    assert ops == ["Conv", "Gemm"] and len(skip) == 1 and skip[0] not in chosen
    with pytest.raises(ConfigError, match="nowhere"):
        select_nodes(onnx_path, exclude=["nowhere"])


def test_bad_requests_are_refused(fp32: tuple[Path, Path], int8: Path, tmp_path: Path) -> None:
    model, data = fp32
    with pytest.raises(ConfigError, match="own folder"):
        quantize_model(model, model, data=data)
    with pytest.raises(ConfigError, match="already quantised"):
        quantize_model(int8, tmp_path / "again", data=data)
    with pytest.raises(ConfigError, match="calibration method"):
        quantize_model(model, tmp_path / "m", data=data, method="median")
    assert main(["quantize", str(model), "--out", str(tmp_path / "m"), "--data", str(data), "--split", "nope"]) == 2
