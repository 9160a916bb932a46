"""PNG plots of a run: throughput per backend per workload, scaling curves, efficiency."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # after use("Agg"), deliberately

from bench.report import backends_of
from bench.results import ok_rows
from bench.workloads import WORKLOADS

_logger = logging.getLogger(__name__)


def _errors(rows: list[dict[str, Any]]) -> list[list[float]]:
    """Asymmetric error bars (median - min, max - median)."""
    meds = [r["measurement"]["images_per_s"] for r in rows]
    return [[m - r["measurement"]["images_per_s_min"] for m, r in zip(meds, rows, strict=True)],
            [r["measurement"]["images_per_s_max"] - m for m, r in zip(meds, rows, strict=True)]]


def plot_throughput(run: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars: one group per workload, one bar per backend, min-max whiskers."""
    backends = [b for b in backends_of(run) if ok_rows(run, "throughput", backend=b)]
    if not backends:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        rows = [ok_rows(run, "throughput", backend=backend, workload=w) for w in WORKLOADS]
        xs = [j + i * width for j, r in enumerate(rows) if r]
        found = [r[0] for r in rows if r]
        ax.bar(xs, [r["measurement"]["images_per_s"] for r in found], width, yerr=_errors(found),
               capsize=2, label=backend)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(WORKLOADS))], WORKLOADS)
    ax.set_ylabel("images / s (median, min-max)")
    ax.set_title(f"Throughput per backend ({run['machine']['cpu']}, {run['machine']['cores']} cores)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_scaling(run: dict[str, Any], path: Path) -> Path | None:
    """Two panels: train img/s over workers/threads and over batch size, one line per backend."""
    base = ok_rows(run, "throughput", workload="train")
    panels = [("scaling-workers", "workers", "workers / threads"),
              ("scaling-batch", "batch_size", "batch size")]
    if not any(ok_rows(run, section) for section, _, _ in panels):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (section, key, label) in zip(axes, panels, strict=True):
        rows = ok_rows(run, section) + base
        for backend in backends_of(run):
            points = sorted((r[key], r["measurement"]["images_per_s"])
                            for r in rows if r["backend"] == backend)
            if len(points) > 1:
                ax.plot(*zip(*points, strict=True), marker="o", label=backend)
        ax.set_xlabel(label)
        ax.set_ylabel("images / s (train)")
        if key == "batch_size":
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Scaling (train workload)")
    return _save(fig, path)


def plot_efficiency(run: dict[str, Any], path: Path) -> Path | None:
    """Bars of loader efficiency (img/s / synthetic) per backend, per step setting (overlap or e2e)."""
    section = "e2e" if ok_rows(run, "e2e") else "overlap"
    rows = ok_rows(run, section)
    steps = sorted({r["step_ms"] for r in rows})
    if not rows:
        return None
    backends = [b for b in backends_of(run) if any(r["backend"] == b for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(1, len(steps))
    for i, step in enumerate(steps):
        group = {r["backend"]: r["measurement"]["images_per_s"] for r in rows if r["step_ms"] == step}
        light = group.get("synthetic")
        if not light:
            continue
        effs = [group.get(b, 0.0) / light for b in backends]
        label = f"step {step:g} ms" if section == "overlap" else "GoogLeNet AMP"
        ax.bar([j + i * width for j in range(len(backends))], effs, width, label=label)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(backends))], backends, fontsize=8)
    ax.set_ylabel("efficiency (img/s / synthetic img/s)")
    ax.set_title("What prefetching buys: loader efficiency against a step that needs no data"
                 if section == "overlap" else "End-to-end GoogLeNet loader efficiency")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_hw_decoder(run: dict[str, Any], path: Path) -> Path | None:
    """dali-gpu train img/s over hw_decoder_load (GPU runs)."""
    rows = sorted(ok_rows(run, "hw-decoder"), key=lambda r: r["hw_decoder_load"])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["hw_decoder_load"] for r in rows], [r["measurement"]["images_per_s"] for r in rows],
            marker="o")
    ax.set_xlabel("hw_decoder_load")
    ax.set_ylabel("images / s (dali-gpu, train)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _logger.info("wrote %s", path)
    return path


def plot_run(run: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Every plot that the run has data for, as ``<stem>-<kind>.png`` in ``out_dir``."""
    makers = {"throughput": plot_throughput, "scaling": plot_scaling, "efficiency": plot_efficiency,
              "hw-decoder": plot_hw_decoder}
    written = [maker(run, out_dir / f"{stem}-{kind}.png") for kind, maker in makers.items()]
    return [p for p in written if p is not None]
