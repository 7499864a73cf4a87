"""Build the peer detector and export it to ONNX; runs INSIDE the peer venv (benchmarks/.venv-peer).

    benchmarks/.venv-peer/bin/python benchmarks/peer_export.py NC OUT_DIR H1xW1 [H2xW2 ...]

The raw network of ultralytics YOLO11n built from its yaml (random weights, no download),
with NC classes, exported once per input size as OUT_DIR/yolo11n_<H>x<W>.onnx (ultralytics'
own exporter and defaults; its graph ends before NMS). Prints one JSON line describing the
files. Never imported by xray: ultralytics is AGPL and lives only in the peer venv.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils import YAML

    nc, out, sizes = int(argv[0]), Path(argv[1]), [tuple(int(v) for v in s.split("x")) for s in argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml_model_load("yolo11n.yaml")  # the packaged yolo11.yaml at scale n
    cfg["nc"] = nc
    local = Path.cwd() / "yolo11n.yaml"  # the stem names the scale
    YAML.save(local, {k: v for k, v in cfg.items() if k != "yaml_file"})
    files = {}
    for h, w in sizes:
        model = YOLO(str(local))
        params = sum(p.numel() for p in model.model.parameters())
        exported = Path(model.export(format="onnx", imgsz=(h, w), device="cpu", verbose=False))
        target = out / f"yolo11n_{h}x{w}.onnx"
        shutil.move(str(exported), target)
        files[f"{h}x{w}"] = str(target)
    print(json.dumps({"ultralytics": ultralytics.__version__, "nc": nc, "params": params, "files": files}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
