"""Dataset reading, training (the loss falls), checkpoints, resume, the evaluate command."""

from __future__ import annotations

import csv
import json
import shutil
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fixtures_dataset import write_dataset

from xray.data.augment import Augment
from xray.data.dataset import XrayDataset, collate, read_scan
from xray.errors import ConfigError, DatasetError
from xray.model import build_model, load_config, model_from_checkpoint
from xray.model.factory import bn_held
from xray.model.preprocess import InputSpec
from xray.scan import ScanKind
from xray.train import loop
from xray.train.evaluate import evaluate_main

torch.set_num_threads(2)
TINY = Path(__file__).resolve().parents[1] / "models" / "tiny.yaml"
SPEC = InputSpec(mode="dual_ratio", size=(128, 384))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("train") / "ds", splits={"train": 6, "val": 2}, seed=0)


def test_dataset_items(data: Path) -> None:
    ds = XrayDataset(data, "train", spec=SPEC, image_labels="manifest")
    image, target, image_labels = ds[0]
    assert image.shape == (3, 128, 384) and image.dtype == torch.float32
    coco_anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[ds.ids[0]]))
    assert len(target["boxes"]) == len(coco_anns)
    x, y, w, h = coco_anns[0]["bbox"]
    assert torch.allclose(target["boxes"][0], torch.tensor([x, y, x + w, y + h]))
    names = {c["id"]: c["name"] for c in ds.coco.dataset["categories"]}
    assert ds.classes[int(target["labels"][0])] == names[coco_anns[0]["category_id"]]
    # Manifest labels: the categories declared in manifests/<scan_id>.json.
    declared = {names[a["category_id"]] for a in coco_anns}
    assert {ds.classes[i] for i in np.where(image_labels.numpy() == 1)[0]} == declared
    images, targets, labels = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 128, 384) and len(targets) == 2 and labels.shape == (2, 13)


def test_classes_mapped_by_name(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "renumbered"
    shutil.copytree(data, root)
    path = root / "annotations" / "train.json"
    coco = json.loads(path.read_text())
    remap = {c["id"]: 100 + (13 - c["id"]) for c in coco["categories"]}  # other ids, reversed order
    for c in coco["categories"]:
        c["id"] = remap[c["id"]]
    for a in coco["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    path.write_text(json.dumps(coco))
    a = XrayDataset(data, "train", spec=SPEC)
    b = XrayDataset(root, "train", spec=SPEC)
    assert all(np.array_equal(x, y) for x, y in zip(a.labels, b.labels))


@pytest.mark.parametrize("breakage, message", [
    ("no_split", "no annotations for split"),
    ("unknown_category", "not a model class"),
    ("missing_image", "file not found"),
    ("truncated_image", "truncated PNG"),
    ("low_size_differs", "low-energy image is"),
    ("bad_bbox", "bad bbox"),
    ("not_json", "not a COCO detection file"),
    ("bad_manifest", "manifest"),
])
def test_malformed_datasets(data: Path, tmp_path: Path, breakage: str, message: str) -> None:
    root = tmp_path / "broken"
    shutil.copytree(data, root)
    path = root / "annotations" / "train.json"
    coco = json.loads(path.read_text())
    if breakage == "no_split":
        path.unlink()
    elif breakage == "unknown_category":
        coco["categories"][0]["name"] = "unicorns"
    elif breakage == "missing_image":
        (root / "images" / coco["images"][0]["file_name"]).unlink()
    elif breakage == "truncated_image":
        png = root / "images" / coco["images"][0]["file_name"]
        png.write_bytes(png.read_bytes()[:-40])
    elif breakage == "low_size_differs":
        low = root / "images" / coco["images"][0]["low_file_name"]
        cv2.imwrite(str(low), cv2.imread(str(low), cv2.IMREAD_UNCHANGED)[:-8])
    elif breakage == "bad_bbox":
        coco["annotations"][0]["bbox"] = [1, 2, -5, 4]
    elif breakage == "not_json":
        path.write_text("{not json")
    elif breakage == "bad_manifest":
        (root / "manifests" / f"{coco['images'][0]['scan_id']}.json").write_text('{"lines": 3}')
    if breakage in ("unknown_category", "bad_bbox"):
        path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=message):
        ds = XrayDataset(root, "train", spec=SPEC, image_labels="manifest")
        ds[0]


def test_dataset_scans_keep_the_entry_labels(data: Path) -> None:
    """Training reads scans through the inspection reader but keeps the dataset's id, spacing and energies."""
    entry = json.loads((data / "annotations" / "train.json").read_text())["images"][0]
    scan = read_scan(data, entry)
    assert scan.id == entry["scan_id"] and scan.kind is ScanKind.DUAL
    assert scan.energies == tuple(entry["energies"]) and scan.pixel_mm == tuple(entry["pixel_mm"])
    high = cv2.imread(str(data / "images" / entry["file_name"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(scan.channels[0], high.astype(np.float32) / np.float32(65535.0))


def test_single_energy_dataset_for_dual_model(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "single", splits={"train": 2}, single_energy=True)
    with pytest.raises(DatasetError, match="single-energy"):
        XrayDataset(root, "train", spec=SPEC)
    image, _, _ = XrayDataset(root, "train", spec=InputSpec(mode="single", size=(128, 384)))[0]
    assert image.shape == (1, 128, 384)


def test_loss_falls(data: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(TINY)
    model = build_model(cfg, num_classes=13)
    ds = XrayDataset(data, "train", spec=SPEC, augment=None)
    images, targets, image_labels = collate([ds[i] for i in range(4)])
    optimizer = loop.make_optimizer(model, {"lr": 3e-3, "weight_decay": 0.0})
    model.train()
    history = []
    for _ in range(25):
        losses = model(images, targets, image_labels)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(np.isfinite(history))
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3])


def test_scheduler_warmup_then_cosine() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.make_scheduler(opt, total_iters=100, warmup_iters=10, min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < 0.01 and lrs[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in pairwise(lrs[:11]))  # rising during warm-up
    assert all(a >= b for a, b in pairwise(lrs[10:]))  # falling after
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_nan_guard_stops_training(data: Path) -> None:
    class Exploding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, images, targets, image_labels):
            return {"loss": self.w * float("nan")}

    model = Exploding()
    ds = XrayDataset(data, "train", spec=SPEC)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = loop.make_scheduler(opt, total_iters=10, warmup_iters=1, min_lr_ratio=0.1)
    with pytest.raises(FloatingPointError):
        loop.train_one_epoch(model, loader, opt, sched, device=torch.device("cpu"), epoch=0, max_bad_steps=2,
                             grad_clip=10.0, progress=False)
    assert model.w.item() == 1.0  # no step was taken with a NaN loss


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fit(data: Path, out: Path, epochs: int, **kw) -> dict:
    return loop.fit(data=data, config=TINY, out=out, epochs=epochs, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    _fit(data, out, epochs=3)
    return out


def test_run_folder_and_checkpoint(run: Path, data: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml", "summary.json", "loss_curves.png",
                 "pr_curves.png", "confusion_matrix.png", "val_predictions.png"):
        assert (run / name).is_file(), name
    rows = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(r["val_mAP50"] != "" for r in rows)
    ckpt = torch.load(run / "last.pt", weights_only=False)
    for key in ("model", "config", "classes", "input", "metrics", "optimizer", "scheduler", "epoch", "metrics_data"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 2 and ckpt["classes"][0] == "tobacco" and len(ckpt["classes"]) == 13
    assert ckpt["input"]["mode"] == "dual_ratio" and ckpt["config"]["train"]["epochs"] == 3
    # Rebuilt from the checkpoint alone, the model gives the same outputs as the trained one.
    model, _ = model_from_checkpoint(run / "last.pt")
    ref = build_model(ckpt["config"], num_classes=13)
    ref.load_state_dict(ckpt["model"])
    ref.eval()
    x = XrayDataset(data, "val", spec=SPEC)[0][0][None]
    with torch.no_grad():
        a, b = model(x)[0], ref(x)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_resume_matches_uninterrupted(data: Path, run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop.train_one_epoch

    def crash_in_epoch_2(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "resumed"
    monkeypatch.setattr(loop, "train_one_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _fit(data, out, epochs=3, plots=False)
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(loop, "train_one_epoch", real)
    _fit(data, out, epochs=3, resume=True, plots=False)

    resumed = torch.load(out / "last.pt", weights_only=False)
    straight = torch.load(run / "last.pt", weights_only=False)
    assert resumed["epoch"] == 2
    assert [int(r["epoch"]) for r in _rows(out / "metrics.csv")] == [0, 1, 2]
    for k, v in straight["model"].items():
        assert torch.allclose(resumed["model"][k].float(), v.float(), atol=1e-5), k


def test_evaluate_command(run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert evaluate_main(["--model", str(run / "best.pt"), "--data", str(data), "--split", "val",
                          "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["split"] == "val" and "per_class" in report and 0.0 <= report["mAP50"] <= 1.0
    assert (tmp_path / "ev" / "pr_curves.png").is_file()
    assert "all" in capsys.readouterr().out
    assert evaluate_main(["--model", str(run / "best.pt"), "--data", str(data), "--split", "nope"]) == 2


def test_augmented_items_stay_consistent(data: Path) -> None:
    ds = XrayDataset(data, "train", spec=SPEC, augment=Augment({"tip": 1.0}), seed=1)
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, target, image_labels = ds[i]
            b = target["boxes"]
            assert image.shape == (3, 128, 384) and torch.isfinite(image).all()
            assert (b[:, 2:] > b[:, :2]).all() and (b >= 0).all() and (b[:, 2] <= 384).all() and (b[:, 3] <= 128).all()
            assert set(target["labels"].tolist()) == set(np.where(image_labels.numpy() == 1)[0].tolist())
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0])  # same epoch and index: same augmentation


def test_kept_tip_patches_change_nothing_but_the_donor_reads(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut = XrayDataset(data, "train", spec=SPEC, augment=Augment({"tip": 1.0, "tip_max": 2}), seed=3)
    kept = XrayDataset(data, "train", spec=SPEC, augment=Augment({"tip": 1.0, "tip_max": 2}), seed=3)
    assert kept.keep_tip_patches() == len(kept.tip_pool) > 0
    reads: list[int] = []
    real_scan = XrayDataset.scan
    monkeypatch.setattr(XrayDataset, "scan", lambda self, i: reads.append(i) or real_scan(self, i))
    for epoch in range(2):
        cut.set_epoch(epoch)
        kept.set_epoch(epoch)
        for i in range(len(kept)):
            reads.clear()
            a, ta, la = cut[i]
            assert len(reads) > 1  # the item's scan and its donors
            reads.clear()
            b, tb, lb = kept[i]
            assert reads == [i]  # only the item's own scan: every donor patch was kept
            assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(la, lb)
    # Past the budget, patches are cut on each draw as before (the first donor's are kept whole).
    small = XrayDataset(data, "train", spec=SPEC, augment=Augment({"tip": 1.0}), seed=3)
    assert 0 < small.keep_tip_patches(budget=1) < len(small.tip_pool)
    small.set_epoch(1)
    assert torch.equal(small[0][0], cut[0][0])
    # Where TIP never runs, nothing is cut.
    off = XrayDataset(data, "train", spec=SPEC, augment=Augment({"tip": 0.0}), seed=3)
    assert off.tip_pool == [] and off.keep_tip_patches() == 0


def test_init_inflates_the_stem_for_a_new_input_channel(data: Path, run: Path, tmp_path: Path) -> None:
    """A dual_ratio run fine-tuned with the detail channel: starts out computing what the old model did."""
    cfg = load_config(TINY)
    cfg = cfg.replace(input={"mode": "dual_ratio_detail", "mean": None, "std": None})
    old = torch.load(run / "best.pt", weights_only=False)
    model = build_model(cfg, num_classes=13).eval()
    inflated = loop.load_inflated(model, old["model"])
    assert len(inflated) == 1  # the stem convolution only
    ref, _ = model_from_checkpoint(run / "best.pt")
    x = XrayDataset(data, "val", spec=SPEC)[0][0][None]
    with torch.no_grad():
        a = ref(x)[0]
        b = model(torch.cat([x, torch.randn(1, 1, *x.shape[2:])], 1))[0]  # any detail channel
    assert torch.allclose(a["scores"], b["scores"], atol=1e-5) and torch.allclose(a["boxes"], b["boxes"], atol=1e-3)

    out = tmp_path / "ft"
    loop.fit(data=data, config=cfg, out=out, epochs=1, device="cpu", progress=False, plots=False,
             init=run / "best.pt")
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["input"]["mode"] == "dual_ratio_detail" and ckpt["config"]["init"]["from"] == str(run / "best.pt")
    other = load_config(TINY)
    other = other.replace(model={"head_channels": other.model.head_channels * 2})
    with pytest.raises(ConfigError, match="--init"):
        loop.fit(data=data, config=other, out=tmp_path / "bad", epochs=1, device="cpu", progress=False,
                 plots=False, init=run / "best.pt")


def _bn_stats(state: dict) -> dict:
    return {k: v.clone() for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_init_from_weights_with_folded_batchnorm_holds_it(data: Path, run: Path, tmp_path: Path) -> None:
    """Weights whose BatchNorm statistics are placeholders (`weights.pt` with `freeze_bn`, as read back
    from an exported graph) train with BatchNorm held: its statistics stay, the rest learns, and a
    resumed or further stage keeps holding it. Ordinary weights update their statistics."""
    from xray.export import write_weights

    model, ckpt = model_from_checkpoint(run / "best.pt")
    write_weights(tmp_path / "folded.pt", model, ckpt, freeze_bn=True)
    start = torch.load(tmp_path / "folded.pt", weights_only=False)["model"]

    _fit(data, tmp_path / "held", epochs=1, plots=False, init=tmp_path / "folded.pt")
    held = torch.load(tmp_path / "held" / "last.pt", weights_only=False)
    assert held["config"]["train"]["freeze_bn"] is True and bn_held(held)
    for k, v in _bn_stats(start).items():
        assert torch.equal(held["model"][k], v), k
    assert any(not torch.equal(held["model"][k], v) for k, v in start.items() if k.endswith("weight")), "nothing learned"
    # Exported, the weights stay marked: a stage from the export holds BatchNorm too.
    from xray.export import export

    assert export(tmp_path / "held" / "best.pt", tmp_path / "m", parity_n=1)["weights"]["freeze_bn"] is True
    assert bn_held(torch.load(tmp_path / "m" / "weights.pt", weights_only=False))
    # Resumed from its last.pt with a config that does not say freeze_bn: still held.
    _fit(data, tmp_path / "held", epochs=2, plots=False, resume=True)
    resumed = torch.load(tmp_path / "held" / "last.pt", weights_only=False)
    assert resumed["epoch"] == 1 and resumed["config"]["train"]["freeze_bn"] is True
    for k, v in _bn_stats(start).items():
        assert torch.equal(resumed["model"][k], v), k

    _fit(data, tmp_path / "free", epochs=1, plots=False, init=run / "best.pt")
    free = torch.load(tmp_path / "free" / "last.pt", weights_only=False)
    assert free["config"]["train"]["freeze_bn"] is False and not bn_held(free)
    assert any(not torch.equal(free["model"][k], v) for k, v in _bn_stats(start).items())


def test_hold_batchnorm_puts_only_batchnorm_in_eval_mode() -> None:
    model = build_model(load_config(TINY), num_classes=13).train()
    held = loop.hold_batchnorm(model)
    assert held > 0
    for m in model.modules():
        is_bn = isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        assert m.training is not is_bn


def test_a_cpu_run_trains_on_the_cores_its_loader_workers_leave(data: Path, tmp_path: Path, monkeypatch) -> None:
    """Torch's threads beside the loader's workers: the cores they leave, at least one, on the CPU only
    and unless OMP_NUM_THREADS says; `threads` overrides; the caller's count is back after the run."""
    cpu = torch.device("cpu")
    assert loop.torch_threads(2, cpu, cores=2) == 1
    assert loop.torch_threads(3, cpu, cores=16) == 13
    assert loop.torch_threads(0, cpu, cores=8) == 8
    assert loop.torch_threads(4, cpu, cores=2) == 1
    assert loop.torch_threads(2, torch.device("cuda")) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert loop.torch_threads(2, cpu, cores=8) is None
    monkeypatch.delenv("OMP_NUM_THREADS")

    seen: list[int] = []
    real = loop.train_one_epoch

    def epoch(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", epoch)
    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    torch.set_num_threads(3)
    try:
        _fit(data, tmp_path / "a", epochs=1, plots=False, workers=1)  # 3 cores, 1 worker: 2 threads
        assert seen == [2] and torch.get_num_threads() == 3
        _fit(data, tmp_path / "b", epochs=1, plots=False, workers=1, threads=1)
        assert seen == [2, 1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(2)
