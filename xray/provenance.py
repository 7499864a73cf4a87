"""Where a model, a run or a benchmark figure came from: package versions and the git commit."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

# The packages whose versions change results; each is recorded when installed.
PACKAGES = ("xray", "torch", "torchvision", "onnx", "onnxruntime", "numpy", "opencv-python-headless")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (those not installed are left out)."""
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_commit(short: bool = False, cwd: str | Path | None = None) -> str | None:
    """The commit of the checkout xray runs from (None outside a git checkout)."""
    args = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        r = subprocess.run(
            args, capture_output=True, text=True, timeout=5, check=False, cwd=cwd or Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None
