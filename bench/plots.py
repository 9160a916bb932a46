"""PNG figures of a run, read at a glance: one colour per backend in every figure, a legend on
every panel, and panels only for what the run measured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # after use("Agg"), deliberately
from matplotlib.figure import Figure

from bench.backends import REFERENCE
from bench.queries import (
    backends_of,
    e2e_figures,
    e2e_key,
    e2e_models,
    hw_decoder_rows,
    measured,
    model_title,
    ok_rows,
    overlap_efficiency,
    rate,
    scale_rows,
    scaling,
    skipped,
    soak_figures,
    throughput,
    workloads_of,
)
from bench.records import Run
from bench.sweep import SYNTHETIC
from dali_pipelines._util.atomic import atomic_write

_logger = logging.getLogger(__name__)

COLOURS = {  # fixed per backend, so a colour means the same loader in every figure
    "naive": "#7f7f7f", "tfdata": "#ff7f0e", "torch-pil": "#1f77b4", "torch-tv": "#17becf",
    "dali-cpu": "#2ca02c", "dali-gpu": "#006400", "dali-ref": "#9467bd", "torchvision-gpu": "#d62728",
    "spdl": "#bcbd22", "torchcodec": "#e377c2", "dali-proxy": "#8c564b",
    SYNTHETIC: "#000000",
}


def colour(backend: str) -> str:
    """The backend's colour, also for ``backend+workload`` (black for names this module does not know)."""
    return COLOURS.get(backend.partition("+")[0], "#000000")


def _bars(ax: Any, names: list[str], values: list[float], errors: list[list[float]] | None = None) -> list:
    """One labelled bar per backend in its colour; hatched for ``backend+workload`` (e.g. train-aug)."""
    bars = ax.bar(range(len(names)), values, yerr=errors, capsize=3, color=[colour(n) for n in names],
                  hatch=["//" if "+" in n else "" for n in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    highs = [v + e for v, e in zip(values, errors[1], strict=True)] if errors else values
    ax.set_ylim(0, 1.4 * max(highs, default=1.0))  # headroom for the legend and the bar labels
    ax.legend(list(bars), names, fontsize=7, ncol=3, loc="upper center")
    return bars


def throughput_figure(run: Run) -> Figure | None:
    """One panel per workload measured: img/s per backend (min-max whiskers), each bar labelled
    with its ratio to dali-ref from the same run."""
    workloads = workloads_of(run)
    if not workloads:
        return None
    rates = throughput(run)
    fig, axes = plt.subplots(1, len(workloads), figsize=(max(7.0, 4.6 * len(workloads)), 4.4), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        rows = [r for b in backends_of(run) for r in ok_rows(run, "throughput", backend=b, workload=workload)]
        names = [r.backend for r in rows]
        values = [rate(r) for r in rows]
        errors = [[v - measured(r).images_per_s_min for v, r in zip(values, rows, strict=True)],
                  [measured(r).images_per_s_max - v for v, r in zip(values, rows, strict=True)]]
        bars = _bars(ax, names, values, errors)
        ref = rates.get(REFERENCE, {}).get(workload)
        if ref:
            ax.bar_label(bars, [f"{v / ref:.2f}x" for v in values], fontsize=7, padding=2)
        left_out = [b for b, whys in skipped(run).items() if workload in whys]
        ax.set_title(workload + (f" ({', '.join(left_out)}: skipped)" if left_out else ""))
        ax.set_ylabel("images / s (median, min-max)")
    note = f"; labels: ratio to {REFERENCE}" if REFERENCE in rates else ""
    fig.suptitle(f"Throughput ({run.machine.cores} cores, batches to {run.device}){note}")
    return fig


def scaling_figure(run: Run) -> Figure | None:
    """Train img/s over workers/threads, one line per backend."""
    found = scaling(run)
    if not found.by_backend:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for backend, rows in found.by_backend.items():
        ax.plot(list(rows), [rate(r) for r in rows.values()], marker="o", color=colour(backend),
                label=backend)
    ax.set_xscale("log", base=2)
    ax.set_xticks(found.counts, [str(n) for n in found.counts])
    ax.minorticks_off()
    ax.set_xlabel("workers / threads")
    ax.set_ylabel("images / s (train)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Scaling over workers (train)")
    return fig


def efficiency_figure(run: Run) -> Figure | None:
    """Loader efficiency (img/s / synthetic img/s): one panel per overlap step and one per e2e model."""
    panels = [(f"simulated {ms:g} ms step",
               [(e2e_key(r), eff) for r, eff in group if r.backend != SYNTHETIC])
              for ms, group in overlap_efficiency(run).items()
              if any(r.backend == SYNTHETIC for r, _ in group)]
    for model in e2e_models(run):
        e2e = e2e_figures(run, model)
        if SYNTHETIC in e2e:
            panels.append((f"{model_title(model)} training step",
                           [(name, f.efficiency) for name, f in e2e.items() if name != SYNTHETIC]))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 5.2 * len(panels)), 4.4), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels, strict=True):
        # Every panel has its synthetic record, so no efficiency here is None.
        _bars(ax, [name for name, _ in bars], [eff or 0.0 for _, eff in bars])
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_ylabel("efficiency (img/s / synthetic img/s)")
        ax.set_title(title)
    fig.suptitle("Loader efficiency against a step that never waits for data")
    return fig


def hw_decoder_figure(run: Run) -> Figure | None:
    """dali-gpu train img/s over hw_decoder_load."""
    rows = hw_decoder_rows(run)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r.hw_decoder_load or 0.0 for r in rows], [rate(r) for r in rows], marker="o",
            color=colour("dali-gpu"), label="dali-gpu")
    ax.set_xlabel("hw_decoder_load (share of images for the hardware JPEG decoder)")
    ax.set_ylabel("images / s (train)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def soak_figure(run: Run) -> Figure | None:
    """Memory after every epoch, one line per soaked backend."""
    rows = ok_rows(run, "soak")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r in rows:
        mem = measured(r).repeat_pss_mb
        ax.plot(range(2, len(mem) + 2), mem, marker=".", color=colour(r.backend), label=r.backend)
    metric = soak_figures(run)[rows[0].backend].memory_metric.upper()
    ax.set_xlabel("epoch (epoch 1 is the warm-up)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{metric} after the epoch, MiB (process + workers)")
    ax.set_ylim(0, 1.2 * max(max(measured(r).repeat_pss_mb) for r in rows))
    ax.legend(fontsize=8)
    ax.set_title("Soak: memory per epoch (train graph)")
    return fig


_SCALE_LINES = {"seconds": {"scan_s": "scan", "cold_verify_s": "cold verify", "warm_verify_s": "warm verify",
                            "loader_s": "loader + first batch", "warm_loader_s": "same, list found",
                            "s3_list_s": "bucket listing"},
                "MiB": {"cold_verify_peak_mb": "cold verify peak", "warm_verify_peak_mb": "warm verify peak",
                        "loader_peak_mb": "loader peak", "cache_mb": "cache file", "list_mb": "reader list",
                        "s3_list_peak_mb": "bucket listing peak"}}


def scale_figure(run: Run) -> Figure | None:
    """Start-up seconds and memory over the number of files, log-log (a straight line of slope 1
    is linear growth)."""
    rows = scale_rows(run)
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for ax, (unit, lines) in zip(axes, _SCALE_LINES.items(), strict=True):
        for name, label in lines.items():
            points = [(r.files, value) for r in rows if (value := getattr(r, name)) is not None]
            if points and all(v > 0 for _, v in points):  # the bucket: only at the sizes listed
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("files")
        ax.set_ylabel(unit)
        ax.set_title("peaks above the imports (loader: above the scan); files" if unit == "MiB" else "phases",
                     fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"Start-up at scale ({run.machine.cores} cores)")
    return fig


FIGURES = {"throughput": throughput_figure, "scaling": scaling_figure, "efficiency": efficiency_figure,
           "hw-decoder": hw_decoder_figure, "soak": soak_figure, "scale": scale_figure}


def plot_run(run: Run, out_dir: Path) -> list[Path]:
    """Every figure the run has data for, as ``<stem>-<kind>.png`` in ``out_dir``."""
    written = []
    for kind, make in FIGURES.items():
        fig = make(run)
        if fig is None:
            continue
        path = out_dir / f"{run.stem}-{kind}.png"
        fig.tight_layout()
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
        plt.close(fig)
        written.append(path)
        _logger.info("wrote %s", path)
    return written
