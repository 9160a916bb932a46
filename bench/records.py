"""The run file: who ran what where (machine, versions, command, settings) and one record per
measurement; written atomically as JSON (plus a flat CSV) after every job, read back by ``report``."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import psutil
import torch

from dali_pipelines._util.atomic import atomic_write, write_json_atomic

FORMAT = "dali-pipelines-bench/2"  # run files without it (older formats) are not read
_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "DALI": "nvidia-dali-cuda120",
             "tensorflow": "tensorflow-cpu", "pillow": "pillow", "numpy": "numpy"}
CSV_COLUMNS = (
    "section", "backend", "workload", "batch_size", "workers", "device", "source", "step_ms",
    "hw_decoder_load", "status", "reason", "images_per_s", "images_per_s_min", "images_per_s_max",
    "cpu_s_per_1000", "peak_pss_mb", "memory_metric", "peak_gpu_mb", "data_wait_frac",
    "gpu_idle_frac", "gpu_step_ms", "repeats", "load_avg_1m",
)


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


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the job's fields with the measurement's and consumer's fields inline."""
    row = {**record, **(record.get("measurement") or {}), **record.get("consumer", {})}
    return {column: row.get(column, "") for column in CSV_COLUMNS}


def save_run(run: dict[str, Any], out_dir: Path) -> Path:
    """Write ``<stem>.json`` and ``<stem>.csv`` into ``out_dir`` (each replaced whole); the JSON's path."""
    json_path, csv_path = out_dir / f"{run['stem']}.json", out_dir / f"{run['stem']}.csv"
    write_json_atomic(json_path, run)
    with atomic_write(csv_path, newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(flat_row(r) for r in run["results"])
    return json_path


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
