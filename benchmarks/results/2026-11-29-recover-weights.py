"""Trainable weights for a bundled model whose training checkpoint is gone: read back from its graph.

    python benchmarks/results/2026-11-29-recover-weights.py [models/default]

Session 14 started from a fresh checkout: the bundled stage-5 model's `best.pt` was not there,
and `make model` takes about 5.5 h on 2 cores. The exported graph holds every weight, with each
BatchNorm folded into the convolution before it. This rebuilds the model from the card's training
config, copies each Conv/Gemm of the graph into the module that ran it (the graph's nodes come in
the order the modules ran; shapes and shared modules are checked), and gives each BatchNorm
placeholder statistics (mean 0, variance 1 - eps, scale 1) with the folded bias as its shift, so
that the eager model computes what the graph does. Training from these weights must hold
BatchNorm (`train.freeze_bn`; `xray train --init` turns it on from the file's `freeze_bn`).

Writes MODEL_DIR/weights.pt (`xray.export.write_weights`) and the card's `weights` entry, after
checking eager against onnxruntime on the canonical 40-ft benchmark scan and its mirror.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from xray.card import write_card
from xray.engine import Engine, mirrored
from xray.export import WEIGHTS_FILE, write_weights
from xray.model.factory import build_model
from xray.model.preprocess import InputSpec
from xray.runtime import create_session


def recover(model_dir: Path) -> nn.Module:
    card = json.loads((model_dir / "model.json").read_text())
    model = build_model(card["training"]["config"], num_classes=len(card["classes"])).eval()
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)]
    spec = InputSpec.from_dict(card["input"])
    with torch.no_grad():
        model(torch.zeros(1, spec.channels, *spec.size))
    for hook in hooks:
        hook.remove()
    graph = onnx.load(model_dir / "model.onnx")
    inits = {i.name: numpy_helper.to_array(i).copy() for i in graph.graph.initializer}
    nodes = [n for n in graph.graph.node if n.op_type in ("Conv", "Gemm")]
    ran = [(k, m) for k, m in enumerate(calls) if isinstance(m, nn.Conv2d | nn.Linear)]
    if len(nodes) != len(ran):
        raise SystemExit(f"{len(nodes)} Conv/Gemm nodes in the graph, {len(ran)} module calls in eager")
    done: dict[int, np.ndarray] = {}
    with torch.no_grad():
        for node, (k, mod) in zip(nodes, ran, strict=True):
            weight = inits[node.input[1]]
            bias = inits[node.input[2]] if len(node.input) > 2 else None
            if tuple(weight.shape) != tuple(mod.weight.shape):
                raise SystemExit(f"{node.name}: {weight.shape} against {tuple(mod.weight.shape)}")
            if id(mod) in done:  # a module run once per pyramid level: the same initializer each time
                if not np.array_equal(done[id(mod)], weight):
                    raise SystemExit(f"{node.name}: a shared module with different weights")
                continue
            done[id(mod)] = weight
            mod.weight.copy_(torch.from_numpy(weight))
            bn = calls[k + 1] if k + 1 < len(calls) and isinstance(calls[k + 1], nn.BatchNorm2d) else None
            if bn is not None:
                if mod.bias is not None:  # the folded bias is all in the BatchNorm's shift
                    mod.bias.zero_()
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(bias))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif bias is not None:
                mod.bias.copy_(torch.from_numpy(bias))
    left = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and id(m) not in done]
    # Parameters outside convolutions, linear layers and BatchNorm (GroupNorm, learned box scales)
    # are not read back here: refuse rather than leave them at their initial values.
    covered = {id(p) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d)
               for p in m.parameters(recurse=False)}
    left += [n for n, p in model.named_parameters() if id(p) not in covered]
    if left:
        raise SystemExit(f"weights the graph gave no values for: {left}")
    return model


def check(model: nn.Module, model_dir: Path) -> dict[str, float]:
    from benchmarks.inputs import canonical_scans
    from xray.sources.files import read_scan

    scan_files = canonical_scans(Path("benchmarks/cache"))["40ft"]
    engine = Engine(model_dir)
    first = engine.model_inputs(read_scan(scan_files.high, scan_files.low))[0]
    session = create_session(model_dir / "model.onnx", providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = {"score": 0.0, "box_px": 0.0, "image_score": 0.0}
    for x in (first.x, mirrored(first)):
        ref = dict(zip(names, session.run(None, {"input": x[None]}), strict=False))
        with torch.no_grad():
            det = model(torch.from_numpy(x[None]))[0]
        if len(ref["scores"]) != len(det["scores"]):
            raise SystemExit(f"{len(ref['scores'])} detections from the graph, {len(det['scores'])} from eager")
        worst["score"] = max(worst["score"], float(np.abs(ref["scores"] - det["scores"].numpy()).max()))
        worst["box_px"] = max(worst["box_px"], float(np.abs(ref["boxes"] - det["boxes"].numpy()).max()))
        worst["image_score"] = max(worst["image_score"], float(np.abs(
            ref["image_scores"].reshape(-1) - det["image_scores"].numpy().reshape(-1)).max()))
    if worst["score"] > 1e-4 or worst["box_px"] > 0.5:
        raise SystemExit(f"eager and the graph disagree: {worst}")
    return worst


def main() -> None:
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "models/default")
    model = recover(model_dir)
    worst = check(model, model_dir)
    card = json.loads((model_dir / "model.json").read_text())
    # As an exported checkpoint records them: the best epoch and its validation metrics.
    val = dict(card["metrics"]["val"])
    epoch = val.pop("epoch", None)
    val.pop("data", None)
    ckpt = {"config": card["training"]["config"], "classes": card["classes"], "epoch": epoch, "metrics": val}
    card["weights"] = {**write_weights(model_dir / WEIGHTS_FILE, model, ckpt, freeze_bn=True),
                       "from": "model.onnx (BatchNorm folded; recovered, session 14)"}
    write_card(model_dir / "model.json", card)
    print(f"wrote {model_dir / WEIGHTS_FILE}: eager matches the graph within {worst}")


if __name__ == "__main__":
    main()
