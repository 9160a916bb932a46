"""The run file: who ran what where (machine, versions, command, settings) and one record per
measurement; ``publish`` writes it after every job, ``python -m bench report`` reads it
back."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

FORMAT = "dali-pipelines-bench/2"  # run files without it (older formats) are not read
# Least warm-up and repeat times, and batches per repeat: the full sweep, and --quick.
TIMING = {"full": {"warmup_s": 1.0, "repeat_s": 2.0, "repeat_batches": 2},
          "quick": {"warmup_s": 0.5, "repeat_s": 1.0, "repeat_batches": 1}}
_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "DALI": "nvidia-dali-cuda120",
             "tensorflow": "tensorflow-cpu", "pillow": "pillow", "numpy": "numpy"}


@dataclass(frozen=True)
class Settings:
    """A run's choices, resolved and validated by the command line."""

    sections: tuple[str, ...]
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    device: str  # "cpu" | "gpu": where batches are delivered
    batch_size: int
    max_workers: int
    repeats: int = 3
    warmup_s: float = TIMING["full"]["warmup_s"]
    repeat_s: float = TIMING["full"]["repeat_s"]
    repeat_batches: int = TIMING["full"]["repeat_batches"]  # each repeat has at least this many batches
    soak_epochs: int = 30
    timeout_s: float = 600.0
    quick: bool = False


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


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, GPU and OS of this machine."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
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
    slug = re.sub(r"[^a-z0-9]+", "-", (info.get("gpu") or "cpu").lower()).strip("-")
    return f"{slug}-{info.get('cores')}core"


def command_line(argv: list[str]) -> str:
    """The command as run, e.g. ``python -m bench --quick`` (``argv``: the arguments given to main)."""
    prog = "dali-bench" if sys.argv[0].endswith("dali-bench") else "python -m bench"
    return " ".join([prog, *map(shlex.quote, argv)])


def new_run(argv: list[str], settings: dict[str, Any], data: dict[str, Any],
            left_out: dict[str, str]) -> dict[str, Any]:
    """The header of a run, with an empty ``results`` list that the sweep fills."""
    now = datetime.datetime.now(datetime.timezone.utc)
    info = machine_info()
    return {"format": FORMAT, "started": now.isoformat(timespec="seconds"), "date": now.strftime("%Y-%m-%d"),
            "stem": f"{machine_slug(info)}-{now:%Y-%m-%d-%H%M%S}", "command": command_line(argv),
            "machine": info, "versions": versions(), "device": settings["device"],
            "quick": settings["quick"], "settings": settings, "data": data, "left_out": left_out,
            "results": []}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def newest_run(out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The run file in ``out_dir`` that started last, and its content."""
    runs = [(path, run) for path in out_dir.glob("*.json") if (run := _read(path)) is not None]
    if not runs:
        raise FileNotFoundError(
            f"no benchmark run in {out_dir} (files of older formats are not read); "
            f"run `python -m bench --out {out_dir}` first")
    return max(runs, key=lambda item: item[1]["started"])
