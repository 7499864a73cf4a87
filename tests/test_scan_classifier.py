"""The box-free scan-level family (`scan_mil`): its objective, its region-map evidence, and the
whole path on a box-free dataset: train -> export (parity) -> engine -> verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xray.engine import Engine, region_evidence
from xray.errors import ConfigError
from xray.model.factory import create_model
from xray.model.preprocess import fit as letterbox_fit
from xray.model.scan_classifier import bootstrap_loss, gce_loss

ARCHIVE_CONFIG = Path(__file__).resolve().parents[1] / "models" / "archive_s.yaml"
TINY = {
    "model": {"width": 0.25, "channels": 16},
    "input": {"size": [128, 384], "mode": "dual_ratio", "mean": None, "std": None},
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "warmup_iters": 2},
}


def test_gce_approaches_bce_and_damps_confidently_contradicted_labels() -> None:
    z = torch.tensor([-3.0, 0.5, 4.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    assert torch.allclose(gce_loss(z, y, 1e-4), bce, atol=1e-3)
    # A label the model contradicts (logit -3 for a positive) pulls less under GCE than under BCE.
    (g_gce,) = torch.autograd.grad(gce_loss(z, y, 0.7)[0], z)
    (g_bce,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(z[0], y[0]), z)
    assert 0 < abs(g_gce[0]) < 0.2 * abs(g_bce[0])


def test_bootstrap_is_bce_at_beta_1_and_pulls_less_on_a_contradicted_label() -> None:
    z = torch.tensor([-3.0, 0.5, 4.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    assert torch.allclose(bootstrap_loss(z, y, 1.0), bce)
    (g_boot,) = torch.autograd.grad(bootstrap_loss(z, y, 0.8)[0], z)
    (g_bce,) = torch.autograd.grad(bce[0], z)
    # Gradient (sigmoid(z) - target): the target of the contradicted positive moves 20 % towards belief.
    assert torch.isclose(g_boot[0], torch.sigmoid(z[0]) - (0.8 + 0.2 * torch.sigmoid(z[0])))
    assert 0 < abs(g_boot[0]) < abs(g_bce[0])


def test_mil_pooling_lets_one_cell_drive_the_scan_score() -> None:
    model = create_model("scan_mil", num_classes=2, in_channels=1, width=0.25, channels=16, lse_r=5.0)
    cells = torch.full((1, 2, 8, 32), -6.0)
    cells[0, 0, 3, 7] = 6.0  # one small region of class 0
    pooled = model.pool_cells(cells)[0]
    assert pooled[0] > pooled[1] + 4.0
    with pytest.raises(ConfigError):
        create_model("scan_mil", num_classes=2, in_channels=1, loss="focal")


def test_region_evidence_is_one_box_per_region_in_scan_pixels() -> None:
    classes = ["tobacco", "machinery"]
    lb = letterbox_fit((300, 1000), (128, 512))  # the scan fills 128 x 427 input px; padding on the right
    maps = np.zeros((2, 8, 32), np.float32)
    maps[0, 1:3, 2:5] = 0.9  # region 1: cells x 2..4, y 1..2
    maps[0, 1, 20] = 0.7  # region 2: one cell
    maps[1, 2, 28:31] = 0.95  # wholly in the padding (input x >= 448)
    dets = region_evidence(maps, lb, classes, 0.5)
    tob = [d for d in dets if d.category == "tobacco"]
    assert [round(d.score, 2) for d in tob] == [0.9, 0.7]
    # Cells are 16 input px; input px -> scan px through the letterbox.
    x1, y1, x2, y2 = tob[0].box
    assert x1 == pytest.approx(2 * 16 / lb.sx, abs=0.5) and x2 == pytest.approx(5 * 16 / lb.sx, abs=0.5)
    assert y1 == pytest.approx(1 * 16 / lb.sy, abs=0.5) and y2 == pytest.approx(3 * 16 / lb.sy, abs=0.5)
    assert lb.resized_hw[1] < 28 * 16  # the machinery region is right of the resized scan
    assert not [d for d in dets if d.category == "machinery"]


@pytest.fixture(scope="module")
def scan_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A box-free archive (fixture scans, 1 in 4 declarations flipped, boxes dropped), a tiny
    scan_mil trained 1 epoch on its declarations, exported."""
    from fixtures_dataset import write_dataset

    from xray.config import load_config
    from xray.export import export
    from xray.simulate.archive_noise import flip_declarations
    from xray.train.loop import fit

    torch.set_num_threads(2)
    base = tmp_path_factory.mktemp("scan_mil")
    data = write_dataset(base / "ds", splits={"train": 4, "val": 2}, seed=5)
    flip_declarations(data, fraction=0.25, seed=0, splits=("train",), drop_boxes=True)
    for split in ("train", "val"):
        assert json.loads((data / "annotations" / f"{split}.json").read_text())["annotations"] == []
    cfg = load_config(ARCHIVE_CONFIG).replace(**TINY)
    summary = fit(data=data, config=cfg, out=base / "run", device="cpu", progress=False, plots=False)
    assert summary["best"]["level"] == "scan"
    export(base / "run" / "best.pt", base / "model", parity_n=2)
    return data, base / "model"


def test_box_free_archive_trains_exports_and_inspects(scan_model: tuple[Path, Path]) -> None:
    from xray.data.dataset import read_scan
    from xray.manifest import Manifest
    from xray.verify import Inspector

    data, model_dir = scan_model
    card = json.loads((model_dir / "model.json").read_text())
    assert card["outputs"]["names"] == ["image_scores", "embedding", "region_maps"]
    assert card["export"]["parity"]["passed"]
    assert card["metrics"]["val"]["level"] == "scan"

    engine = Engine(model_dir, threads=1)
    entry = json.loads((data / "annotations" / "val.json").read_text())["images"][0]
    scan = read_scan(data, entry)
    found = engine.detect(scan)
    # The scan scores are the model's own output.
    x, _ = engine.model_inputs(scan)[0].x, None
    raw = engine._run(x)
    assert found.image_scores == pytest.approx(dict(zip(engine.classes, raw["image_scores"].tolist())), abs=1e-6)
    assert found.embedding is not None and np.linalg.norm(found.embedding) == pytest.approx(1.0, abs=1e-4)
    # Every region of the map above the threshold is an evidence box inside the scan.
    engine.region_thresh = float(np.min(raw["region_maps"]))  # every cell counts: one region per category
    found = engine.detect(scan)
    assert sorted({d.category for d in found.detections}) == sorted(engine.classes)
    assert all(
        0 <= d.box[0] < d.box[2] <= scan.width and 0 <= d.box[1] < d.box[3] <= scan.height for d in found.detections
    )

    manifest = Manifest.model_validate_json((data / "manifests" / f"{entry['scan_id']}.json").read_text())
    verdict = Inspector(engine).inspect(scan, manifest)
    assert verdict.image_scores == found.image_scores
    assert verdict.detections == found.detections


def test_init_from_a_pretrained_run_and_resume(scan_model: tuple[Path, Path], tmp_path: Path) -> None:
    from xray.config import load_config
    from xray.train.loop import fit

    data, model_dir = scan_model
    run = Path(json.loads((model_dir / "model.json").read_text())["training"]["checkpoint"]).parent
    cfg = load_config(ARCHIVE_CONFIG).replace(**TINY)
    fit(data=data, config=cfg, out=tmp_path / "ft", init=run / "best.pt", device="cpu", progress=False, plots=False)
    ckpt = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)
    assert ckpt["config"]["init"]["from"] == str(run / "best.pt")
    fit(data=data, config=cfg, out=tmp_path / "ft", epochs=2, resume=True, device="cpu", progress=False, plots=False)
    assert torch.load(tmp_path / "ft" / "last.pt", weights_only=False)["epoch"] == 1


def test_flipped_declarations_name_another_category_and_are_mismatches_in_the_truth(tmp_path: Path) -> None:
    from fixtures_dataset import write_dataset

    from xray.goods import default_goods_table
    from xray.simulate.archive_noise import flip_declarations

    data = write_dataset(tmp_path / "ds", splits={"train": 6}, seed=1)
    before = {r["scan_id"]: r for r in map(json.loads, (data / "truth.jsonl").read_text().splitlines())}
    rec = flip_declarations(data, fraction=1.0, seed=0, splits=("train",))
    assert rec["flipped"] and json.loads((data / "label_noise.json").read_text())["flipped"] == rec["flipped"]
    after = {r["scan_id"]: r for r in map(json.loads, (data / "truth.jsonl").read_text().splitlines())}
    table = default_goods_table()
    for scan_id, (old, new) in rec["flipped"].items():
        lines = json.loads((data / "manifests" / f"{scan_id}.json").read_text())["lines"]
        declared = {table.category_of(line["hs_code"]) for line in lines}
        assert new in declared and new not in before[scan_id]["declared"] and old != new
        assert after[scan_id]["mismatch"] is True and after[scan_id]["loaded"] == before[scan_id]["loaded"]
