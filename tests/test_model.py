"""Detector families (registry-parametrised forward shapes) and the shared preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xray.config import BOX_FREE_FAMILIES
from xray.errors import ConfigError
from xray.model import build_model, create_model, list_models, load_config
from xray.model.preprocess import SINGLE_ENERGY_RATIO, InputSpec, fit, preprocess
from xray.scan import Scan, ScanKind

torch.set_num_threads(2)
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SMALL = {"width": 0.25, "fpn_channels": 32, "head_channels": 32, "head_convs": 1, "image_head_channels": 32}


@pytest.mark.parametrize("name", [m for m in list_models() if m not in BOX_FREE_FAMILIES])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_forward_shapes(name: str, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=13, in_channels=channels, **SMALL)
    x = torch.randn(2, channels, 128, 384)

    model.eval()
    with torch.no_grad():
        dets = model(x)
    assert len(dets) == 2
    for d in dets:
        n = len(d["scores"])
        assert d["boxes"].shape == (n, 4) and d["labels"].shape == (n,)
        assert n <= model.detections_per_img
        if n:
            assert int(d["labels"].max()) < 13 and float(d["scores"].min()) >= model.score_thresh
            assert (d["boxes"][:, 2:] >= d["boxes"][:, :2]).all()
        assert d["image_scores"].shape == (13,)

    model.train()
    targets = [
        {"boxes": torch.tensor([[20.0, 30.0, 150.0, 110.0]]), "labels": torch.tensor([4])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    image_labels = torch.zeros(2, 13)
    image_labels[1] = -1  # unknown labels are ignored, not trained towards 0
    losses = model(x, targets, image_labels)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness", "image_labels"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def test_no_image_head_and_strides() -> None:
    model = create_model("fcos_lite", num_classes=5, in_channels=2, image_head=False, strides=[32, 64], **{
        k: v for k, v in SMALL.items() if k != "image_head_channels"})
    model.eval()
    with torch.no_grad():
        d = model(torch.randn(1, 2, 128, 256))[0]
    assert "image_scores" not in d
    assert model.strides == (32, 64)


def test_unknown_model_and_bad_args() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("yolo_v99", num_classes=3, in_channels=1)
    with pytest.raises(ConfigError):
        create_model("fcos_lite", num_classes=3, in_channels=1, no_such_option=1)
    with pytest.raises(ConfigError, match="strides"):
        create_model("fcos_lite", num_classes=3, in_channels=1, strides=[16, 64])


@pytest.mark.parametrize("config", sorted(p.name for p in MODELS_DIR.glob("*.yaml")))
def test_bundled_configs_build(config: str) -> None:
    cfg = load_config(MODELS_DIR / config)
    model = build_model(cfg, num_classes=13)
    spec = cfg.input
    params = sum(p.numel() for p in model.parameters())
    assert params * 4 < 15e6  # float32 weights must fit the 15 MB bundled-model budget
    model.eval()
    with torch.no_grad():
        d = model(torch.zeros(1, spec.channels, *spec.size))[0]
    if cfg.model.name in BOX_FREE_FAMILIES:  # scan-level: scores and region maps, no boxes
        assert d["image_scores"].shape == (13,) and d["region_maps"].shape[0] == 13
    else:
        assert d["boxes"].shape[1] == 4


def _dual_scan(h: int = 200, w: int = 600) -> Scan:
    a_high = np.zeros((h, w), np.float32)
    a_high[50:150, 100:300] = 2.0
    a_low = a_high * 1.2
    return Scan(id="t", channels=np.exp(-np.stack([a_high, a_low])).astype(np.float32), kind=ScanKind.DUAL)


def test_preprocess_dual_ratio_letterbox() -> None:
    spec = InputSpec(mode="dual_ratio", size=(128, 512))
    x, lb = preprocess(_dual_scan(), spec)
    assert x.shape == (3, 128, 512) and x.dtype == np.float32
    # 200 x 600 -> scale min(128/200, 512/600) = 0.64 -> 128 x 384, padded on the right.
    assert lb.resized_hw == (128, 384)
    mean, std = np.array(spec.mean)[:, None], np.array(spec.std)[:, None]
    raw = x.reshape(3, -1) * std + mean
    raw = raw.reshape(3, 128, 512)
    # Inside the goods: A_high = 2, A_low = 2.4, ratio (2.4 + eps) / (2 + eps).
    cy, cx = int(100 * lb.sy), int(200 * lb.sx)
    assert raw[0, cy, cx] == pytest.approx(2.0, abs=1e-3)
    assert raw[1, cy, cx] == pytest.approx(2.4, abs=1e-3)
    assert raw[2, cy, cx] == pytest.approx(2.45 / 2.05, abs=1e-3)
    # Padding is air: A = 0, ratio 1.
    assert np.allclose(raw[:2, :, 400:], 0.0, atol=1e-5) and np.allclose(raw[2, :, 400:], 1.0, atol=1e-5)
    # Boxes map to the input and back.
    box = np.array([[100.0, 50.0, 300.0, 150.0]])
    assert np.allclose(lb.to_scan(lb.to_input(box)), box, atol=1e-3)


def test_preprocess_modes_and_errors() -> None:
    scan = _dual_scan()
    assert preprocess(scan, InputSpec(mode="single", size=(64, 192)))[0].shape == (1, 64, 192)
    assert preprocess(scan, InputSpec(mode="dual", size=(64, 192)))[0].shape == (2, 64, 192)
    # Single-energy and pseudo-colour scans still work with a dual-energy model.
    single = Scan(id="s", channels=scan.channels[:1].copy(), kind=ScanKind.SINGLE)
    spec = InputSpec(mode="dual_ratio", size=(64, 192), mean=(0, 0, 0), std=(1, 1, 1))
    x, lb = preprocess(single, spec)
    cy, cx = int(100 * lb.sy), int(200 * lb.sx)
    assert x[1, cy, cx] == pytest.approx(x[0, cy, cx] * SINGLE_ENERGY_RATIO, rel=1e-4)
    rgb = Scan(id="c", channels=np.full((3, 64, 64), 0.5, np.float32), kind=ScanKind.RGB, bit_depth=8)
    assert preprocess(rgb, InputSpec(mode="rgb", size=(64, 64)))[0].shape == (3, 64, 64)
    grey = preprocess(rgb, InputSpec(mode="single", size=(64, 64), mean=(0,), std=(1,)))[0]
    assert grey[0, 10, 10] == pytest.approx(-np.log(0.5), rel=1e-4)
    assert preprocess(scan, InputSpec(mode="rgb", size=(64, 192)))[0].shape == (3, 64, 192)
    with pytest.raises(ConfigError, match="multiples of 32"):
        InputSpec.from_dict({"mode": "dual", "size": (100, 300)})
    with pytest.raises(ConfigError, match="'input.mode'"):
        InputSpec.from_dict({"mode": "hyperspectral"})
    with pytest.raises(ValueError):  # built in code, the same checks (pydantic's ValidationError)
        InputSpec(mode="dual", size=(100, 300))


def test_fit_never_exceeds_input() -> None:
    for hw in [(800, 2440), (800, 1200), (37, 1001), (2000, 100)]:
        lb = fit(hw, (512, 1536))
        assert lb.resized_hw[0] <= 512 and lb.resized_hw[1] <= 1536
        assert max(lb.resized_hw[0] / 512, lb.resized_hw[1] / 1536) > 0.99  # one side fills the input


def test_preprocess_imports_without_torch() -> None:
    # The ONNX inference engine reuses the preprocessing; it must not drag in torch.
    import subprocess
    import sys

    code = "import sys, xray.model.preprocess; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False,
                       env={"PYTHONPATH": str(root), "PATH": ""})
    assert r.returncode == 0, r.stderr


def test_detail_channel_keeps_fine_lines_that_shrinking_averages_away() -> None:
    # Two goods blocks of equal mean attenuation: one uniform, one of thin lines every
    # 4 px (like the ten-pack lines of a cigarette master case) shrunk 3x into the input.
    h, w = 384, 1152
    a = np.zeros((h, w), np.float32)
    a[100:300, 100:500] = 1.0
    lines = np.zeros((200, 400), np.float32)
    lines[::4] = 4.0
    a[100:300, 600:1000] = lines
    scan = Scan(id="d", channels=np.exp(-np.stack([a, a * 1.2])).astype(np.float32), kind=ScanKind.DUAL)
    spec = InputSpec(mode="dual_ratio_detail", size=(128, 384), mean=(0, 0, 0, 0), std=(1, 1, 1, 1))
    x, lb = preprocess(scan, spec)
    assert x.shape == (4, 128, 384)
    uniform, lined = (slice(45, 90), slice(45, 150)), (slice(45, 90), slice(215, 320))
    # Shrunk, both blocks look alike in attenuation; the detail channel tells them apart.
    assert x[0][uniform].mean() == pytest.approx(x[0][lined].mean(), rel=0.05)
    assert x[3][lined].mean() > 10 * x[3][uniform].mean() and x[3][lined].mean() > 0.5
    # The first three channels are the dual_ratio input.
    plain = preprocess(scan, InputSpec(mode="dual_ratio", size=(128, 384), mean=(0, 0, 0), std=(1, 1, 1)))[0]
    assert np.allclose(x[:3], plain, atol=1e-5)
    assert lb.resized_hw == (128, 384) and np.allclose(x[3][:20], 0.0)  # air has no texture


def test_config_base_is_merged_section_by_section(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text((MODELS_DIR / "tiny.yaml").read_text())
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain: {epochs: 2}\ninput: {mode: dual}\n")
    base, child = load_config(tmp_path / "base.yaml"), load_config(tmp_path / "child.yaml")
    assert child.train.epochs == 2 and child.input.mode == "dual"
    assert child.model == base.model and child.input.size == base.input.size
    assert child.train.model_copy(update={"epochs": base.train.epochs}) == base.train and child.train != base.train
    (tmp_path / "self.yaml").write_text("_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="own _base_"):
        load_config(tmp_path / "self.yaml")
    (tmp_path / "gone.yaml").write_text("_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(tmp_path / "gone.yaml")
