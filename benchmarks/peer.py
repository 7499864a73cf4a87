"""Model-stage comparisons at equal input: our ONNX graph in onnxruntime, the same model in eager
PyTorch, and the peer — the raw network of ultralytics YOLO11n built from `yolo11n.yaml` (no
weights), exported to ONNX at our model's input size and at 512 x 1536 and run in onnxruntime
with the engine's session settings.

Ultralytics is AGPL: it is installed only into `benchmarks/.venv-peer` (created here on first
use, pinned torch from the same local wheels) and only `benchmarks/peer_export.py` runs in it,
in a subprocess. The timing runs here, with onnxruntime. Our graph includes decoding and NMS;
the peer's raw network stops before NMS, which flatters the peer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eager import find_checkpoint, load_eager, time_eager
from benchmarks.inputs import CanonicalScan
from benchmarks.report import YARDSTICK_INPUT
from benchmarks.stats import summarize
from xray.model.preprocess import InputSpec, preprocess
from xray.runtime import session_options
from xray.sources.files import read_scan

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "benchmarks" / ".venv-peer"
PEER_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1"]  # first, pinned: the local wheels
PEER_EXTRA = ["ultralytics==8.4.*", "onnx", "onnxslim"]
BIG = (YARDSTICK_INPUT[0], YARDSTICK_INPUT[1])
# The peer venv takes ~6 GB (a CUDA build of torch). Below this much free space it is not built:
# filling the disk would break the sections that run after this one.
PEER_VENV_FREE_BYTES = 10 * 1024**3


def engine_session(path: str | Path):
    """An onnxruntime CPU session with the engine's settings (all cores, one inter-op thread, full optimisation)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])


def time_session(session, x: np.ndarray, *, n: int, warmup: int = 3) -> dict:
    """Latency of one `session.run` on input `x` (1, C, H, W) in ms."""
    name = session.get_inputs()[0].name
    times = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return summarize(times)


def ensure_peer_venv(venv: Path = PEER_VENV, timeout: float = 1200) -> Path:
    """The peer venv's python, creating the venv on first use.

    Raises:
        RuntimeError: the venv cannot be built (no local wheels, no network, pip failure).
    """
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if python.is_file() and stamp.is_file():
        return python
    free = shutil.disk_usage(venv.parent).free
    if free < PEER_VENV_FREE_BYTES:
        raise RuntimeError(f"the peer venv needs ~6 GB and {free / 1024**3:.1f} GB is free on {venv.parent} "
                           f"(at least {PEER_VENV_FREE_BYTES / 1024**3:.0f} GB wanted): not built")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES],
             [str(python), "-m", "pip", "install", "-q", *PEER_EXTRA]]
    for i, cmd in enumerate(steps):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if i == 0 and r.returncode == 0:
            (venv / ".gitignore").write_text("*\n")  # 5 GB that git must never walk or add
        if r.returncode != 0:
            tail = "\n".join(line for line in r.stderr.splitlines() if not line.startswith("WARNING"))[-800:]
            raise RuntimeError(f"building the peer venv failed at `{' '.join(cmd[-3:])}`: {tail}")
    stamp.touch()
    return python


def export_peer(nc: int, sizes: list[tuple[int, int]], cache: Path) -> dict[str, Any]:
    """YOLO11n ONNX files for `sizes`, exported in the peer venv (cached in `cache/peer`)."""
    out = (cache / "peer").resolve()
    files = {f"{h}x{w}": out / f"yolo11n_{h}x{w}.onnx" for h, w in sizes}
    info_path = out / f"yolo11n_nc{nc}.json"
    if info_path.is_file() and all(f.is_file() for f in files.values()):
        info = json.loads(info_path.read_text())
        if set(files) <= set(info["files"]):
            return info
    python = ensure_peer_venv()
    with tempfile.TemporaryDirectory(prefix="xray-peer-") as tmp:
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(Path(tmp) / "config")}
        env.pop("PYTHONPATH", None)
        r = subprocess.run([str(python), str(ROOT / "benchmarks" / "peer_export.py"), str(nc), str(out),
                            *[f"{h}x{w}" for h, w in sizes]], cwd=tmp, env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"peer export failed ({r.returncode}): {r.stderr[-800:] or r.stdout[-800:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    info_path.write_text(json.dumps(info, indent=2))
    return info


def model_input(scan: CanonicalScan, spec: InputSpec, size: tuple[int, int]) -> np.ndarray:
    """The canonical scan preprocessed as the engine does, letterboxed into `size`: (1, C, H, W)."""
    x, _ = preprocess(read_scan(scan.high, scan.low), spec.replace(size=tuple(size)))
    return x[None]


def run(model_dir: Path, scans: dict[str, CanonicalScan], cache: Path, *, quick: bool) -> dict[str, Any]:
    """The section: one row per input size (the model's own, and 512 x 1536)."""
    n = 5 if quick else 30
    card = json.loads((model_dir / "model.json").read_text())
    spec = InputSpec.from_dict(card["input"])
    sizes = [tuple(spec.size)] + ([BIG] if tuple(spec.size) != BIG else [])
    notes: list[str] = []

    ours = engine_session(model_dir / "model.onnx")
    eager = None
    checkpoint = find_checkpoint(card, model_dir)
    if checkpoint is not None:
        eager = load_eager(checkpoint)
    else:
        named = (card.get("training") or {}).get("checkpoint") or "(none named in the card)"
        notes.append(f"eager PyTorch skipped: the training checkpoint {named} is not on this machine "
                     "(it is not shipped with the model)")
    peer: dict[str, Any] | None = None
    try:
        peer = export_peer(len(card["classes"]), sizes, cache)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        notes.append(f"peer YOLO11n skipped: {e}")

    rows = []
    for h, w in sizes:
        x = model_input(scans["40ft"], spec, (h, w))
        row: dict[str, Any] = {"input": [h, w], "ours_onnx_ms": time_session(ours, x, n=n)}
        if eager is not None:
            row["ours_eager_ms"] = time_eager(eager, x, n=n)
        if peer is not None:
            # YOLO11n takes 3 channels; ours may take more (the detail channel): same pixels, its width.
            x3 = np.ascontiguousarray(np.resize(x, (x.shape[0], 3, *x.shape[2:])), dtype=np.float32)
            row["yolo11n_onnx_ms"] = time_session(engine_session(peer["files"][f"{h}x{w}"]), x3, n=n)
        rows.append(row)
    return {"n": n, "model": card.get("name"), "model_params": card.get("architecture", {}).get("params"),
            "peer": {k: peer[k] for k in ("ultralytics", "nc", "params")} if peer else None,
            "rows": rows, "notes": notes,
            "scope": "model stage only, on the preprocessed 40-ft canonical scan: ours = network + decoding + NMS; "
                     "YOLO11n = raw network (no decoding, no NMS)"}
