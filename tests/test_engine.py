"""The inference engine: same preprocessing as training, same detections as torch, tiling merge."""

import numpy as np
import pytest
import torch

from xray.data.dataset import XrayDataset
from xray.engine import Engine, Pass
from xray.errors import ConfigError
from xray.manifest import Manifest
from xray.model.factory import model_from_checkpoint
from xray.model.preprocess import InputSpec, Letterbox
from xray.runtime import choose_providers
from xray.scan import Scan
from xray.sources.files import read_scan
from xray.verdict import Channel
from xray.verify import Inspector, VerifierConfig, verify


def _checkpoint(model_dir):
    return model_dir.parent / "run" / "best.pt"


def test_provider_choice_prefers_accelerators_and_names_missing_ones():
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == ["CUDAExecutionProvider",
                                                                                   "CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="CUDAExecutionProvider"):
        choose_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_engine_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        Engine(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match="malformed model card"):
        Engine(tmp_path)


def test_engine_preprocessing_equals_training_preprocessing(tiny_engine, scan_files):
    """The engine reads files with the image sources; training with its dataset: same tensor."""
    root = scan_files[0].high.parents[2]
    ds = XrayDataset(root, "test", spec=tiny_engine.spec, classes=tiny_engine.classes, image_labels="none")
    for i, f in enumerate(scan_files[:2]):
        x_train = ds[i][0].numpy()
        x_engine = tiny_engine.model_inputs(read_scan(f.high, f.low))[0].x
        assert x_engine.shape == x_train.shape and np.allclose(x_engine, x_train, atol=1e-5)


def test_engine_detections_match_eager_torch(tiny_model_dir, tiny_engine, scan_files):
    model, _ = model_from_checkpoint(_checkpoint(tiny_model_dir))
    model.eval()
    compared = 0
    for f in scan_files:
        scan = read_scan(f.high, f.low)
        found = tiny_engine.detect(scan)
        dets = found.detections
        assert set(found.timings_ms) == {"preprocess", "model", "postprocess"}
        assert found.scan_format == "dual-16bit"  # the format whose verifier thresholds judge it
        first = tiny_engine.model_inputs(scan)[0]
        x, lb = first.x, first.lb
        with torch.no_grad():
            ref = model(torch.from_numpy(x)[None])[0]
        keep = ref["scores"].numpy() >= tiny_engine.min_score
        ref_boxes = lb.to_scan(ref["boxes"].numpy()[keep])
        ref_scores = ref["scores"].numpy()[keep]
        ref_cats = [tiny_engine.classes[k] for k in ref["labels"].numpy()[keep]]
        for box, score, cat in zip(ref_boxes, ref_scores, ref_cats):
            if not (box[2] > box[0] and box[3] > box[1]):
                continue
            match = [d for d in dets if d.category == cat and abs(d.score - score) <= 1e-4
                     and np.abs(np.array(d.box) - box).max() <= 0.5 / min(lb.sx, lb.sy)]
            assert match, f"torch detection {cat} {score:.4f} {box} missing from the engine"
            compared += 1
    assert compared > 0


def test_inspect_returns_a_verdict_with_stage_timings(tiny_engine, scan_files):
    f = scan_files[0]
    inspector = Inspector(tiny_engine)
    scan = read_scan(f.high, f.low)
    v = inspector.inspect(scan, Manifest.load(f.manifest), decode_ms=2.0)
    assert v.scan_id == f.high.stem.replace("_high", "") and v.channel in set(Channel)
    assert list(v.timings_ms) == ["decode", "preprocess", "model", "postprocess", "verify", "total"]
    assert v.model_id == tiny_engine.model_id and v.model_version == tiny_engine.model_version and 0 <= v.risk <= 1
    assert inspector.config == VerifierConfig.from_card(tiny_engine.card)
    # The same as detecting and verifying by hand: the inspector adds nothing of its own.
    by_hand = verify(tiny_engine.detect(scan), Manifest.load(f.manifest), config=inspector.config)
    assert by_hand.model_dump(exclude={"timings_ms"}) == v.model_dump(exclude={"timings_ms"})


def test_tile_merge_reports_an_object_on_a_seam_once(tiny_model_dir):
    """An object cut by a tile seam is seen whole by the full-scan pass and in part by the
    two tiles on either side; after the merge it is one detection, in scan pixels."""
    engine = Engine(tiny_model_dir, threads=1, tile=True)
    H, W = engine.spec.size
    s, k = 0.5, engine.classes.index("tobacco")
    scan_hw = (int(H / s), int(1.6 * W / s))  # at the tile scale: one tile high, 1.6 tiles wide
    whole = Pass(np.zeros(1), Letterbox(scan_hw=scan_hw, resized_hw=(H, int(1.6 * W * H / scan_hw[0] / s * s)),
                                        input_hw=(H, 2 * W)))
    tile = Letterbox(scan_hw=(H, W), resized_hw=(H, W), input_hw=(H, W))
    left = Pass(np.zeros(1), tile, 0, 0, s, (False, False, True, False))
    right = Pass(np.zeros(1), tile, W // 2, 0, s, (True, False, True, False))
    seam = W  # the left tile's right edge, in resized-scan pixels
    in_big = np.array([0.8 * W, 0.2 * H, 1.2 * W, 0.8 * H], np.float32)  # crosses the seam
    obj = in_big / s  # scan pixels
    def out(box, score):
        return {"boxes": np.array([box], np.float32), "scores": np.array([score], np.float32), "labels": np.array([k])}

    raw = [
        (whole, out(whole.lb.to_input(obj[None])[0], 0.7)),
        # left tile: the object runs past its right edge, cut there
        (left, out([in_big[0], in_big[1], seam, in_big[3]], 0.9)),
        # right tile (offset W/2): it holds the object whole
        (right, out([in_big[0] - W // 2, in_big[1], in_big[2] - W // 2, in_big[3]], 0.8)),
    ]
    dets = engine.merge(raw, scan_hw)
    assert [d.category for d in dets] == ["tobacco"], dets
    assert np.abs(np.array(dets[0].box) - obj).max() < 1.0


def test_tiling_adds_tiles_only_for_scans_much_larger_than_training_scale(tiny_model_dir, scan_files):
    engine = Engine(tiny_model_dir, threads=1, tile=True)
    small = read_scan(scan_files[0].high, scan_files[0].low)
    assert len(engine.model_inputs(small)) == 1  # fits at the training scale: one pass


def test_engine_preprocessing_equals_training_preprocessing_with_the_detail_channel(tiny_engine, scan_files):
    import copy

    engine = copy.copy(tiny_engine)
    engine.spec = tiny_engine.spec.replace(mode="dual_ratio_detail", mean=None, std=None)
    root = scan_files[0].high.parents[2]
    ds = XrayDataset(root, "test", spec=engine.spec, classes=engine.classes, image_labels="none")
    x_train = ds[0][0].numpy()
    x_engine = engine.model_inputs(read_scan(scan_files[0].high, scan_files[0].low))[0].x
    assert x_engine.shape == x_train.shape == (4, *engine.spec.size) and np.allclose(x_engine, x_train, atol=1e-5)
    assert x_engine[3].std() > 0  # the fixture scans have texture


def test_fuse_mirror_averages_each_box_with_its_mirrored_match():
    from xray.engine import fuse_mirror

    out = {"boxes": np.array([[10, 10, 30, 40], [60, 10, 90, 40]], np.float32), "scores": np.array([0.8, 0.6], np.float32),
           "labels": np.array([0, 1]), "image_scores": np.array([0.2, 0.9], np.float32)}
    # Mirrored in a 100 px wide region: the first box seen again at 70..90 (same class), the
    # second box's mirror carries another class, so it has no match.
    mirrored = {"boxes": np.array([[70, 11, 90, 40], [10, 10, 40, 40]], np.float32),
                "scores": np.array([0.6, 0.7], np.float32), "labels": np.array([0, 0]),
                "image_scores": np.array([0.4, 0.7], np.float32)}
    fused = fuse_mirror(out, mirrored, width=100)
    assert np.allclose(fused["scores"], [0.7, 0.3]) and np.array_equal(fused["boxes"], out["boxes"])
    assert np.allclose(fused["image_scores"], [0.3, 0.8])
    empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, int)}
    assert np.allclose(fuse_mirror(out, empty, width=100)["scores"], [0.4, 0.3])


def test_flip_is_taken_from_the_card_and_keeps_the_boxes_in_place(tiny_model_dir, tmp_path, scan_files):
    import json
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "model.json").read_text())
    card["engine"] = {"flip": True}
    (model / "model.json").write_text(json.dumps(card))
    flipped, plain = Engine(model, threads=1), Engine(model, threads=1, flip=False)
    assert flipped.flip and not plain.flip and not Engine(tiny_model_dir, threads=1).flip
    scan = read_scan(scan_files[0].high, scan_files[0].low)
    pa, pb = plain.detect(scan), flipped.detect(scan)
    a, ia, b, ib = pa.detections, pa.image_scores, pb.detections, pb.image_scores
    boxes = {d.box for d in a}
    assert all(d.box in boxes for d in b)  # the mirrored pass moves no box, it only re-scores
    assert set(ia) == set(ib) and ia != ib


def _toy_graph(path, channels: int, classes: int, *, batched: bool) -> None:
    """A graph with the engine's outputs whose scores and boxes follow the input's mean: one
    detection per image; the batched form takes (N, C, H, W) and pads each image's detections
    with a score-0 row, as a batch-exported detector would."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values, dtype=np.float32):
        return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(values, dtype), name))

    n = "batch" if batched else 1
    nodes = [
        const("half", 0.5), const("base", 0.4), const("zero", 0.0), const("ax1", [1], np.int64),
        const("ax2", [2], np.int64), const("corner", [[[10.0, 20.0, 200.0, 120.0]]]),
        const("ones", np.ones((1, classes), np.float32)),
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sigmoid", ["mean"], ["sig"]),
        helper.make_node("Mul", ["sig", "half"], ["sig_half"]),
        helper.make_node("Add", ["sig_half", "base"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "ax1"], ["s2"]),  # (N, 1)
        helper.make_node("Unsqueeze", ["s2", "ax2"], ["s3"]),  # (N, 1, 1)
        helper.make_node("Mul", ["s3", "corner"], ["b1"]),  # (N, 1, 4)
        helper.make_node("Mul", ["s2", "zero"], ["z2"]),
        helper.make_node("Mul", ["b1", "zero"], ["zb"]),
        helper.make_node("Mul", ["s2", "ones"], ["image"]),  # (N, K)
    ]
    if batched:
        nodes += [
            helper.make_node("Concat", ["s2", "z2"], ["scores"], axis=1),
            helper.make_node("Concat", ["b1", "zb"], ["boxes"], axis=1),
            helper.make_node("Cast", ["scores"], ["labels"], to=TensorProto.INT64),
            helper.make_node("Identity", ["image"], ["image_scores"]),
        ]
        shapes = {"boxes": [n, 2, 4], "scores": [n, 2], "labels": [n, 2], "image_scores": [n, classes]}
    else:
        nodes += [
            const("flat4", [-1, 4], np.int64), const("flat", [-1], np.int64),
            helper.make_node("Reshape", ["s2", "flat"], ["scores"]),
            helper.make_node("Reshape", ["b1", "flat4"], ["boxes"]),
            helper.make_node("Cast", ["z2"], ["z2i"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["z2i", "flat"], ["labels"]),
            helper.make_node("Reshape", ["image", "flat"], ["image_scores"]),
        ]
        shapes = {"boxes": [1, 4], "scores": [1], "labels": [1], "image_scores": [classes]}
    types = {"labels": TensorProto.INT64}
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, channels, "h", "w"])],
        [helper.make_tensor_value_info(k, types.get(k, TensorProto.FLOAT), v) for k, v in shapes.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _toy_model(tiny_model_dir, folder, *, batched: bool):
    import json

    folder.mkdir()
    card = json.loads((tiny_model_dir / "model.json").read_text())
    card["engine"] = {"flip": True}
    card["outputs"]["names"] = ["boxes", "scores", "labels", "image_scores"]
    card.pop("domain", None)
    card.pop("guard", None)
    (folder / "model.json").write_text(json.dumps(card))
    channels = InputSpec.from_dict(card["input"]).channels
    _toy_graph(folder / "model.onnx", channels, len(card["classes"]), batched=batched)
    return folder


def _same(a, b) -> None:
    assert a.scan_id == b.scan_id and len(a.detections) == len(b.detections)
    for da, db in zip(a.detections, b.detections):
        assert da.category == db.category
        assert da.score == pytest.approx(db.score, abs=1e-6) and da.box == pytest.approx(db.box, abs=1e-4)
    assert a.image_scores == pytest.approx(b.image_scores, abs=1e-6)
    assert a.domain == b.domain


def test_detect_batch_equals_detect_one_scan_at_a_time(tiny_model_dir, tmp_path, scan_files):
    """The bundled kind of graph (batch fixed at 1): detect_batch runs each input alone, same results."""
    import json
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "model.json").read_text())
    card["engine"] = {"flip": True}
    (model / "model.json").write_text(json.dumps(card))
    engine = Engine(model, threads=1)
    assert not engine.batched
    scans = [read_scan(f.high, f.low) for f in scan_files[:3]]
    small = Scan(id="small", channels=scans[0].channels[:, :96, :200].copy(), kind=scans[0].kind)
    batch = [scans[0], small, scans[1], scans[2], scans[0]]
    got = engine.detect_batch(batch)
    assert len(got) == len(batch)
    for scan, g in zip(batch, got):
        _same(g, engine.detect(scan))
        assert set(g.timings_ms) == {"preprocess", "model", "postprocess"}
    assert engine.detect_batch([]) == []


def test_detect_batch_runs_a_batch_graph_once_per_shape_and_splits_it(tiny_model_dir, tmp_path, scan_files):
    """A graph with a batch axis: inputs of one shape (scans of any size, letterboxed, and their
    mirrors) go in one call, padded detections are dropped, and the results equal the
    single-image graph's."""
    fixed = Engine(_toy_model(tiny_model_dir, tmp_path / "fixed", batched=False), threads=1)
    batched = Engine(_toy_model(tiny_model_dir, tmp_path / "batched", batched=True), threads=1)
    assert batched.batched and not fixed.batched
    scans = [read_scan(f.high, f.low) for f in scan_files[:3]]
    small = Scan(id="small", channels=scans[0].channels[:, :96, :200].copy(), kind=scans[0].kind)
    batch = [scans[0], small, scans[1], scans[2]]
    calls = []
    run = batched.session.run
    batched.session.run = lambda names, feed: calls.append(feed["input"].shape) or run(names, feed)
    got = batched.detect_batch(batch)
    assert [c[0] for c in calls] == [8]  # every scan letterboxed to the input size, each with its mirror
    for scan, g in zip(batch, got):
        want = fixed.detect(scan)
        assert len(want.detections) == 1
        _same(g, want)
    assert len({g.detections[0].score for g in got}) == len(batch)  # each scan kept its own outputs
    calls.clear()
    batched.flip = fixed.flip = False
    _same(batched.detect(scans[1]), fixed.detect(scans[1]))  # a batch of one
    assert [c[0] for c in calls] == [1]


def test_bundled_weights_compute_what_the_bundled_graph_does(scan_files):
    """`models/default/weights.pt` (what `xray train --init` starts a stage from) is the bundled graph's
    model: the same detections and image scores on a scan and on its mirror. Its BatchNorm is folded,
    so training from it holds BatchNorm."""
    from xray.bundled import default_model_dir
    from xray.engine import mirrored
    from xray.model.factory import bn_held, load_checkpoint

    engine = Engine(threads=1)
    weights = default_model_dir() / engine.card["weights"]["file"]
    model, _ = model_from_checkpoint(weights)
    assert engine.card["weights"]["freeze_bn"] and bn_held(load_checkpoint(weights))
    compared = 0
    for f in scan_files[:2]:
        first = engine.model_inputs(read_scan(f.high, f.low))[0]
        for x in (first.x, mirrored(first)):
            graph = engine.run_many([x])[0]
            with torch.no_grad():
                eager = model(torch.from_numpy(x)[None])[0]
            assert len(graph["scores"]) == len(eager["scores"])
            assert np.allclose(graph["scores"], eager["scores"].numpy(), atol=1e-4)
            assert np.allclose(graph["boxes"], eager["boxes"].numpy(), atol=0.05)
            assert np.array_equal(graph["labels"], eager["labels"].numpy())
            assert np.allclose(np.reshape(graph["image_scores"], -1), eager["image_scores"].numpy().reshape(-1), atol=1e-4)
            compared += len(graph["scores"])
    assert compared > 0
