"""The wheel carries the bundled model and the data the package reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_bundled_model_and_package_data(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("xray-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/data/")[0] for n in names if "/data/share/xray/" in n)
    for f in ("model.onnx", "model.json", "weights.pt"):
        assert f"{data}/data/share/xray/models/default/{f}" in names
    model = zipfile.ZipFile(wheel).read(f"{data}/data/share/xray/models/default/model.onnx")
    assert model == (ROOT / "models" / "default" / "model.onnx").read_bytes()
    for packaged in ("xray/goods.yaml", "xray/simulate/materials.yaml", "xray/service/console/index.html",
                     "xray/simulate/profiles/export-8bit-jpeg.yaml"):
        assert packaged in names, packaged
