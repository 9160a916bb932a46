"""Who ran a benchmark: CPU model, cores, GPU, library versions, date and the exact command."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import sys
from typing import Any

import psutil
import torch

_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "DALI": "nvidia-dali-cuda120",
             "tensorflow": "tensorflow-cpu", "pillow": "pillow", "numpy": "numpy"}


def cpu_model() -> str:
    """The CPU model string from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """Name of CUDA device 0, or None."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, GPU and OS of this machine."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu_name(),
        "os": platform.platform(),
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Python and library versions (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in _PACKAGES.items():
        found[name] = _version(dist) or (_version("tensorflow") if name == "tensorflow" else None)
    return found


def machine_slug(info: dict[str, Any]) -> str:
    """Short file-name-safe machine name, e.g. ``cpu-2core`` or ``nvidia-h100-80gb-hbm3-16core``."""
    base = info.get("gpu") or "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return f"{slug}-{info.get('cores')}core"


def today() -> str:
    """UTC date, YYYY-MM-DD."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def now_iso() -> str:
    """UTC timestamp, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None, module: str = "bench") -> str:
    """The command as run, e.g. ``python -m bench --quick`` (``argv``: the arguments given to main)."""
    args = sys.argv[1:] if argv is None else argv
    prog = "dali-bench" if module == "bench" and sys.argv[0].endswith("dali-bench") else f"python -m {module}"
    return " ".join([prog, *map(shlex.quote, args)])
