"""Export a training checkpoint to ONNX, with a parity check; the model card is `xray.card`.

    xray export runs/NAME/best.pt --out models/NAME [--data DATASET --split test]

Writes `model.onnx`, `model.json` (the model card) and `weights.pt` (the weights, for
`xray train --init`). Measured choice: torch's legacy
TorchScript-based exporter (`dynamo=False`, opset 17) with decoding and NMS *in the
graph* — the dynamo exporter fails on torchvision's batched NMS. The graph takes one
preprocessed scan (1, C, H, W) (any H, W; see `xray.model.preprocess`) and returns
`boxes` (N, 4) xyxy in input pixels, `scores` (N,), `labels` (N,) class indices and,
with the image head, `image_scores` (K,). The engine only maps boxes back through the
letterbox and applies the card's per-class score thresholds.

After every export the ONNX model runs in onnxruntime next to eager torch on several
inputs; boxes must agree within 0.5 px and scores within 1e-4, or the export fails. The
check runs twice: on the final detections of the shipped graph, and on the raw head
outputs at every pyramid point (a temporary graph), which tied scores cannot blur.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
from torch import Tensor, nn

from xray.atomic import write_atomic
from xray.card import build_card, card_metrics, measure_latency, write_card
from xray.config import config_from_dict
from xray.data.dataset import XrayDataset
from xray.errors import ConfigError, XrayError
from xray.model.detector import GoodsDetector
from xray.model.factory import bn_held, model_from_checkpoint
from xray.model.preprocess import InputSpec, finish, preprocess
from xray.model.scan_classifier import ScanClassifier
from xray.runtime import create_session

OPSET = 17
BOX_TOL_PX = 0.5
SCORE_TOL = 1e-4
# Region-map cells are thresholded into evidence boxes, never summed into a score; measured on a
# 6-epoch archive_s at 640x2048, onnxruntime's fused convs put cells 3.2e-4 from eager torch.
MAP_TOL = 1e-3


class ParityError(XrayError):
    """The exported ONNX model does not reproduce the torch model."""


class ExportWrapper(nn.Module):
    """One preprocessed scan in, flat detection tensors out (what the ONNX graph computes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.has_image_head = getattr(model, "image_head", None) is not None

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        det = self.model(x)[0]
        out = (det["boxes"], det["scores"], det["labels"])
        return out + (det["image_scores"],) if self.has_image_head else out


class RawWrapper(nn.Module):
    """The network without decoding and NMS: raw head tensors (for the tie-proof parity check)."""

    def __init__(self, model: GoodsDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        features = list(self.model.backbone(x).values())
        out = self.model.head(features)
        return out["cls_logits"].sigmoid(), out["bbox_regression"], out["bbox_ctrness"].sigmoid()


def raw_parity_check(model: GoodsDetector, inputs: list[np.ndarray], workdir: str | Path) -> dict[str, Any]:
    """Compare the raw head outputs of onnxruntime and torch at every point of the pyramid.

    Detection-level parity cannot tell tied scores apart (untrained models tie a lot);
    this check can: probabilities within SCORE_TOL and box side distances within
    BOX_TOL_PX pixels at every point, for every input.

    Raises:
        ParityError: naming the worst difference.
    """
    path = Path(workdir) / "raw_parity.onnx"
    wrapper = RawWrapper(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(inputs[0][None]),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            dynamic_axes={"input": {2: "h", 3: "w"}},
        )
    session = ort_session(path)
    max_stride = max(model.strides)
    worst = {"prob": 0.0, "box_px": 0.0}
    try:
        for i, x in enumerate(inputs):
            with torch.no_grad():
                ref = [t.numpy() for t in wrapper(torch.from_numpy(x[None]))]
            got = session.run(None, {"input": x[None]})
            prob = max(float(np.abs(ref[0] - got[0]).max()), float(np.abs(ref[2] - got[2]).max()))
            box_px = float(np.abs(ref[1] - got[1]).max()) * max_stride  # distances are in units of the stride
            worst = {"prob": max(worst["prob"], prob), "box_px": max(worst["box_px"], box_px)}
            if prob > SCORE_TOL or box_px > BOX_TOL_PX:
                raise ParityError(
                    f"raw ONNX head outputs differ from torch on input {i} {tuple(x.shape)}: "
                    f"probabilities by {prob:.2e}, box sides by up to {box_px:.2e} px"
                )
    finally:
        path.unlink(missing_ok=True)
    return {"max_prob_diff": worst["prob"], "max_box_side_diff_px": worst["box_px"]}


def export_onnx(model: nn.Module, path: str | Path, *, input_size: tuple[int, int], channels: int) -> list[str]:
    """Export an eval-mode detector to ONNX; returns the output names."""
    wrapper = ExportWrapper(model).eval()  # an eval wrapper: the exporter restores its mode afterwards
    outputs = ["boxes", "scores", "labels"] + (["image_scores"] if wrapper.has_image_head else [])
    dynamic = {"input": {2: "height", 3: "width"}, **{k: {0: "detections"} for k in ("boxes", "scores", "labels")}}
    x = torch.zeros(1, channels, *input_size)
    with warnings.catch_warnings():
        # The tracer warns about Python ints from shapes in torchvision's code; dynamic
        # H and W are covered by the parity check at two input sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return outputs


def ort_session(path: str | Path, *, threads: int = 2) -> Any:
    """The CPU session the parity check compares torch with."""
    return create_session(path, threads=threads, providers=["CPUExecutionProvider"])


def _match(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, score_floor: float, full: int
) -> tuple[list[str], int, float, float]:
    """Match ONNX detections to torch's one to one.

    Returns:
        (problems (empty: parity holds), detections compared, largest box difference in
        px and largest score difference over the compared pairs)

    Detections whose score is within SCORE_TOL of a cut-off (the score threshold, or the
    last kept score when the detection limit is reached) may legitimately fall on either
    side of it, so they are not required to match.
    """
    cut = score_floor
    if len(ref["scores"]) >= full:
        cut = max(cut, float(ref["scores"].min()))
    problems = []
    worst_box = worst_score = 0.0
    compared = 0
    used = np.zeros(len(got["scores"]), bool)
    for box, score, label in zip(ref["boxes"], ref["scores"], ref["labels"]):
        if score <= cut + SCORE_TOL:
            continue
        ok = (
            (
                ~used
                & (got["labels"] == label)
                & (np.abs(got["scores"] - score) <= SCORE_TOL)
                & (np.abs(got["boxes"] - box).max(axis=1, initial=0) <= BOX_TOL_PX)
            )
            if len(got["scores"])
            else np.zeros(0, bool)
        )
        if not ok.any():
            problems.append(f"torch detection {label} {score:.5f} {np.round(box, 2).tolist()} has no ONNX counterpart")
        else:
            j = int(np.argmax(ok))
            used[j] = True
            compared += 1
            worst_box = max(worst_box, float(np.abs(got["boxes"][j] - box).max()))
            worst_score = max(worst_score, float(abs(got["scores"][j] - score)))
    # Tie-proof part: the sorted score lists agree, whichever detection is which.
    rs, gs = np.sort(ref["scores"])[::-1], np.sort(got["scores"])[::-1]
    n = min(len(rs), len(gs))
    if max(len(rs), len(gs)) > n and max(rs[n:].max(initial=0), gs[n:].max(initial=0)) > score_floor + SCORE_TOL:
        problems.append(f"torch gives {len(rs)} detections, ONNX {len(gs)}")
    if n and np.abs(rs[:n] - gs[:n]).max() > SCORE_TOL:
        problems.append(f"sorted scores differ by up to {np.abs(rs[:n] - gs[:n]).max():.2e}")
    extra = ~used & (got["scores"] > cut + SCORE_TOL)
    problems += [
        f"ONNX detection {int(got['labels'][i])} {got['scores'][i]:.5f} not in torch's output"
        for i in np.where(extra)[0]
    ]
    if "image_scores" in ref:
        diff = float(np.abs(ref["image_scores"] - got["image_scores"]).max())
        if diff > SCORE_TOL:
            problems.append(f"image scores differ by {diff:.2e}")
    return problems, compared, worst_box, worst_score


def parity_check(model: GoodsDetector, onnx_path: str | Path, inputs: list[np.ndarray]) -> dict[str, Any]:
    """Compare onnxruntime with eager torch on each (C, H, W) input.

    Raises:
        ParityError: naming the first differences.
    """
    session = ort_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    model.eval()
    worst_box = worst_score = 0.0
    n_dets = n_compared = 0
    for i, x in enumerate(inputs):
        with torch.no_grad():
            det = model(torch.from_numpy(x[None]))[0]
        ref = {k: v.numpy() for k, v in det.items()}
        got = dict(zip(names, session.run(None, {"input": x[None]})))
        problems, compared, box_diff, score_diff = _match(
            ref, got, score_floor=model.score_thresh, full=model.detections_per_img
        )
        n_compared += compared
        if problems:
            raise ParityError(
                f"{onnx_path}: ONNX output differs from torch on input {i} {tuple(x.shape)}: " + "; ".join(problems[:5])
            )
        worst_box, worst_score = max(worst_box, box_diff), max(worst_score, score_diff)
        n_dets += len(ref["scores"])
    # `compared` < `detections` when scores tie at a cut-off (typical of untrained models).
    return {
        "inputs": len(inputs),
        "shapes": sorted({tuple(x.shape) for x in inputs}),
        "detections": n_dets,
        "compared": n_compared,
        "max_box_diff_px": worst_box,
        "max_score_diff": worst_score,
        "box_tol_px": BOX_TOL_PX,
        "score_tol": SCORE_TOL,
        "passed": True,
    }


# The ONNX outputs of a box-free scan-level model (`scan_mil`), in order.
SCAN_LEVEL_OUTPUTS = ["image_scores", "embedding", "region_maps"]


class ScanLevelWrapper(nn.Module):
    """One preprocessed scan in; scan scores (K,), embedding (D,), region maps (K, h, w) out."""

    def __init__(self, model: ScanClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.model(x)[0]
        return tuple(out[k] for k in SCAN_LEVEL_OUTPUTS)


def export_scan_level_onnx(
    model: ScanClassifier, path: str | Path, *, input_size: tuple[int, int], channels: int
) -> list[str]:
    """Export a box-free scan-level model to ONNX (dynamic height and width); returns the output names."""
    wrapper = ScanLevelWrapper(model).eval()
    dynamic = {"input": {2: "height", 3: "width"}, "region_maps": {1: "map_height", 2: "map_width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, channels, *input_size),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=SCAN_LEVEL_OUTPUTS,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return list(SCAN_LEVEL_OUTPUTS)


def scan_level_parity_check(model: ScanClassifier, onnx_path: str | Path, inputs: list[np.ndarray]) -> dict[str, Any]:
    """Every output of onnxruntime within SCORE_TOL of eager torch (region maps: MAP_TOL), on each input.

    Raises:
        ParityError: naming the output and the difference.
    """
    session = ort_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    wrapper = ScanLevelWrapper(model).eval()
    worst: dict[str, float] = dict.fromkeys(names, 0.0)
    for i, x in enumerate(inputs):
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(torch.from_numpy(x[None]))]
        got = session.run(None, {"input": x[None]})
        for name, r, g in zip(names, ref, got):
            if r.shape != g.shape:
                raise ParityError(f"{onnx_path}: {name} has shape {g.shape} in ONNX, {r.shape} in torch (input {i})")
            diff = float(np.abs(r - g).max(initial=0.0))
            worst[name] = max(worst[name], diff)
            tol = MAP_TOL if name == "region_maps" else SCORE_TOL
            if diff > tol:
                raise ParityError(
                    f"{onnx_path}: ONNX {name} differs from torch by {diff:.2e} (tolerance {tol:.0e}) "
                    f"on input {i} {tuple(x.shape)}"
                )
    return {
        "inputs": len(inputs),
        "shapes": sorted({tuple(x.shape) for x in inputs}),
        "max_diff": worst,
        "score_tol": SCORE_TOL,
        "map_tol": MAP_TOL,
        "passed": True,
    }


def parity_inputs(
    spec: InputSpec,
    *,
    data: str | Path | None = None,
    split: str = "val",
    n: int = 4,
    classes: Sequence[str] | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """Inputs for the parity check: preprocessed scans of a dataset, else synthetic ones.

    Synthetic inputs are smooth random attenuation images at the model's input size and
    at a second size (the graph has dynamic height and width).
    """
    if data is not None:
        ds = XrayDataset(data, split, spec=spec, classes=classes, image_labels="none")
        return [preprocess(ds.scan(i), spec)[0] for i in range(min(n, len(ds)))]
    rng = np.random.default_rng(seed)
    h, w = spec.size
    out = []
    for i in range(n):
        # The last input is smaller than the model input: exercises the dynamic shape.
        hh, ww = (h, w) if i < n - 1 else (h // 2 + 32, w // 2)
        size = spec.model_copy(update={"size": (hh, ww)})  # only `finish` reads it
        coarse = rng.uniform(0, 4, size=(hh // 16, ww // 16)).astype(np.float32)
        att = cv2.resize(coarse, (ww, hh), interpolation=cv2.INTER_LINEAR)
        base = (
            np.stack([att, att * 1.1][: 1 if spec.mode == "single" else 2])
            if spec.physical
            else np.stack([att / 4] * 3)
        )
        base = np.concatenate([base] + [np.abs(np.gradient(att, axis=0))[None]] * spec.detail_channels)
        out.append(finish(base.astype(np.float32), size))
    return out


# Beside the graph: the trainable weights, so that a later stage can start from the bundled model
# (`xray train --init models/default/weights.pt`) without its training runs.
WEIGHTS_FILE = "weights.pt"


def write_weights(path: Path, model: nn.Module, ckpt: dict[str, Any], *, freeze_bn: bool) -> dict[str, Any]:
    """The model's weights as a checkpoint `xray train --init` takes (no optimizer, no schedule);
    its card entry. `freeze_bn`: the BatchNorm statistics are placeholders, and training from
    these weights must hold them (`train.freeze_bn`)."""
    state = {
        "model": model.state_dict(),
        "config": ckpt["config"],
        "classes": ckpt["classes"],
        "epoch": ckpt.get("epoch"),
        "metrics": ckpt.get("metrics"),
        "freeze_bn": freeze_bn,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))
    return {"file": path.name, "size_bytes": path.stat().st_size, "freeze_bn": freeze_bn}


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    split: str = "test",
    parity_n: int = 4,
    latency_runs: int = 0,
) -> dict[str, Any]:
    """Checkpoint -> OUT/model.onnx + OUT/model.json, parity-checked, and OUT/weights.pt to train
    on from (`write_weights`). Returns the card.

    Args:
        checkpoint: A training checkpoint (best.pt / last.pt).
        out: Folder to write into.
        data: Dataset whose `split` is evaluated into the card's metrics and whose scans
            feed the parity check (default: synthetic parity inputs, validation metrics only).
        latency_runs: When > 0, measure onnxruntime latency (2 threads) at the input size
            on the first parity input and record it in the card.

    Raises:
        ParityError: when onnxruntime does not reproduce eager torch.
    """
    model, ckpt = model_from_checkpoint(checkpoint)
    if not isinstance(model, ScanClassifier | GoodsDetector):
        raise ConfigError(
            f"{checkpoint}: export takes the goods detectors and scan-level goods models, not {type(model).__name__}"
        )
    cfg = config_from_dict(ckpt["config"], f"{checkpoint}: config")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    inputs = parity_inputs(cfg.input, data=data, split=split, n=parity_n, classes=ckpt["classes"])
    # The family decides the graph and what parity means; the card is the same for both.
    size, channels = cfg.input.size, cfg.input.channels
    parity: dict[str, Any]
    if isinstance(model, ScanClassifier):
        outputs = export_scan_level_onnx(model, onnx_path, input_size=size, channels=channels)
        parity = scan_level_parity_check(model, onnx_path, inputs)
    else:
        outputs = export_onnx(model, onnx_path, input_size=size, channels=channels)
        parity = {**parity_check(model, onnx_path, inputs), "raw": raw_parity_check(model, inputs, out)}
    card = build_card(
        name=out.name,
        onnx_path=onnx_path,
        model=model,
        cfg=cfg,
        ckpt=ckpt,
        checkpoint=checkpoint,
        outputs=outputs,
        parity=parity,
        metrics=card_metrics(model, ckpt, cfg, data=data, split=split),
        opset=OPSET,
        latency=measure_latency(onnx_path, inputs[0][None], runs=latency_runs) if latency_runs > 0 else None,
    )
    card["weights"] = write_weights(out / WEIGHTS_FILE, model, ckpt, freeze_bn=bn_held(ckpt))
    if isinstance(model, ScanClassifier):
        # The scan-level score is this model's evidence (its boxes are only where the map peaks), so the
        # uncalibrated verifier weighs it fully; `xray calibrate` replaces this with its own choice.
        card["verifier"] = {"image_weight": 1.0}
    write_card(out / "model.json", card)
    return card


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray export", description="Export a checkpoint to ONNX with a model card.")
    p.add_argument("checkpoint", help="training checkpoint, e.g. runs/NAME/best.pt")
    p.add_argument("--out", required=True, help="output folder, e.g. models/NAME")
    p.add_argument("--data", default=None, help="dataset to evaluate into the card and feed the parity check")
    p.add_argument("--split", default="test", help="split of --data (default: test)")
    p.add_argument("--parity-n", type=int, default=4, help="inputs in the parity check")
    p.add_argument("--latency-runs", type=int, default=0, help="measure ORT latency (2 threads) over N runs")
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    """The `xray export` command; returns an exit code (2 on bad input, 3 on failed parity)."""
    args = get_args_parser().parse_args(argv)
    try:
        card = export(
            args.checkpoint,
            args.out,
            data=args.data,
            split=args.split,
            parity_n=args.parity_n,
            latency_runs=args.latency_runs,
        )
    except ParityError as e:
        print(f"export FAILED parity: {e}")
        return 3
    except XrayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    p = card["export"]["parity"]
    if "max_diff" in p:  # a scan-level model
        print(
            f"wrote {Path(args.out) / 'model.onnx'} ({card['size_bytes'] / 1e6:.1f} MB), model.json and weights.pt; parity "
            f"passed on {p['inputs']} inputs (max diff per output: "
            + ", ".join(f"{k} {v:.1e}" for k, v in p["max_diff"].items())
            + ")"
        )
    else:
        print(
            f"wrote {Path(args.out) / 'model.onnx'} ({card['size_bytes'] / 1e6:.1f} MB), model.json and weights.pt; parity "
            f"passed on {p['inputs']} inputs ({p['compared']} of {p['detections']} detections compared, max box diff "
            f"{p['max_box_diff_px']:.2e} px, max score diff {p['max_score_diff']:.2e}; raw head: probabilities within "
            f"{p['raw']['max_prob_diff']:.1e}, box sides within {p['raw']['max_box_side_diff_px']:.1e} px)"
        )
    if card["latency"]:
        lat = card["latency"]
        print(
            f"onnxruntime latency at {lat['input_shape']}, {lat['threads']} threads: median {lat['median_ms']:.1f} ms "
            f"(p90 {lat['p90_ms']:.1f}, min {lat['min_ms']:.1f})"
        )
    return 0
