"""Soak mode: many epochs of the DALI train graph, memory recorded after every epoch.

DALI's memory pools keep their high-water mark, so memory should rise over the first epoch or
two and then stay flat; growth after epoch 2 is the figure that shows a leak (target < 5%).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"), deliberately
from tqdm import tqdm

from bench.machine import command_line, machine_info, machine_slug, now_iso, today, versions
from bench.monitor import gpu_used_bytes, rss_bytes
from dali_pipelines import ImageFolderData, PipelineConfig, make_loader

_logger = logging.getLogger(__name__)
_MIB = 1024 * 1024
GROWTH_TARGET_PCT = 5.0


def soak_device(data: ImageFolderData, cfg: PipelineConfig, epochs: int) -> list[dict[str, Any]]:
    """Run ``epochs`` epochs of one train loader; RSS (process + children) and GPU memory per epoch."""
    loader = make_loader(data, cfg, train=True)
    records = []
    try:
        for epoch in tqdm(range(1, epochs + 1), desc=f"soak {cfg.device}", unit="epoch"):
            start, images = time.perf_counter(), 0
            for batch, _ in loader:
                images += int(batch.shape[0])
            gpu = gpu_used_bytes() if cfg.device == "gpu" else None
            records.append({"device": cfg.device, "epoch": epoch, "images": images,
                            "images_per_s": images / (time.perf_counter() - start),
                            "rss_mb": rss_bytes() / _MIB,
                            "gpu_mb": None if gpu is None else gpu / _MIB})
    finally:
        loader.close()
    return records


def growth_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory after epoch 2 vs after the last epoch, in MiB and percent."""
    second, last = records[min(1, len(records) - 1)], records[-1]
    summary = {"epochs": last["epoch"], "rss_epoch2_mb": second["rss_mb"], "rss_last_mb": last["rss_mb"],
               "rss_growth_pct": 100.0 * (last["rss_mb"] - second["rss_mb"]) / second["rss_mb"],
               "gpu_growth_pct": None}
    if second["gpu_mb"]:
        summary["gpu_growth_pct"] = 100.0 * (last["gpu_mb"] - second["gpu_mb"]) / second["gpu_mb"]
    return summary


def write_soak(run: dict[str, Any], out_dir: Path) -> list[Path]:
    """``soak-<machine>-<date>.json``, ``.csv`` and ``.png`` (RSS and GPU memory per epoch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"soak-{run['machine_slug']}-{run['date']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    with paths[1].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(run["epochs"][0]))
        writer.writeheader()
        writer.writerows(run["epochs"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for device in run["summary"]:
        rows = [r for r in run["epochs"] if r["device"] == device]
        ax.plot([r["epoch"] for r in rows], [r["rss_mb"] for r in rows], marker=".", label=f"{device} RSS")
        if rows[0]["gpu_mb"] is not None:
            ax.plot([r["epoch"] for r in rows], [r["gpu_mb"] for r in rows], marker=".",
                    label=f"{device} GPU memory")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MiB after the epoch")
    ax.set_ylim(bottom=0)
    ax.set_title("Soak: memory per epoch (DALI train graph)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def run_soak(data: ImageFolderData, devices: list[str], epochs: int, batch_size: int,
             threads: int) -> dict[str, Any]:
    """Soak every device in ``devices``; the run record with per-epoch rows and growth summaries."""
    epochs_rows: list[dict[str, Any]] = []
    summary = {}
    for device in devices:
        cfg = PipelineConfig(batch_size=batch_size, device=device, num_threads=threads)
        rows = soak_device(data, cfg, epochs)
        epochs_rows += rows
        summary[device] = growth_summary(rows)
    info = machine_info()
    return {"kind": "soak", "date": today(), "timestamp": now_iso(), "command": command_line(),
            "machine": info, "machine_slug": machine_slug(info), "versions": versions(),
            "data": {"name": str(data.root), "images": len(data)}, "batch_size": batch_size,
            "threads": threads, "epochs_run": epochs, "epochs": epochs_rows, "summary": summary}
