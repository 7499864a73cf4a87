"""What machine a benchmark figure was measured on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from xray.provenance import versions


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    """The NVIDIA GPUs as nvidia-smi names them (name, memory); none without the driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_info() -> dict:
    """CPU model, cores, memory, GPUs, OS and the versions of the libraries that set the speed."""
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": mem_gb, "gpus": _gpus(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions()}
