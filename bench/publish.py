"""A run's files in its results folder: JSON, CSV and Markdown rewritten after every job, so a
late failure (or Ctrl-C) loses nothing measured so far, and the PNG figures at the end.

Each file is replaced whole (atomically): a reader never sees half a file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.plots import plot_run
from bench.records import Record, Run
from bench.report import render_markdown
from dali_pipelines._util.atomic import atomic_write, write_json_atomic

CSV_COLUMNS = (
    "section", "backend", "workload", "batch_size", "workers", "device", "source", "step_ms",
    "hw_decoder_load", "status", "reason", "images_per_s", "images_per_s_min", "images_per_s_max",
    "cpu_s_per_1000", "peak_pss_mb", "memory_metric", "peak_gpu_mb", "data_wait_frac",
    "gpu_idle_frac", "gpu_step_ms", "repeats", "load_avg_1m",
)


def flat_row(record: Record) -> dict[str, Any]:
    """One CSV row: the job's fields with the measurement's and consumer's fields inline."""
    fields = record.to_dict()
    row = {**fields, **(fields["measurement"] or {}), **fields["consumer"]}
    return {column: row.get(column, "") for column in CSV_COLUMNS}


def save_run(run: Run, out_dir: Path) -> Path:
    """Write ``<stem>.json`` and ``<stem>.csv`` into ``out_dir`` (each replaced whole); the JSON's path."""
    json_path, csv_path = out_dir / f"{run.stem}.json", out_dir / f"{run.stem}.csv"
    write_json_atomic(json_path, run.to_dict())
    with atomic_write(csv_path, newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(flat_row(r) for r in run.results)
    return json_path


def write_markdown(run: Run, out_dir: Path) -> Path:
    """Write ``<stem>.md`` (every table of the run) into ``out_dir``; its path."""
    md = out_dir / f"{run.stem}.md"
    with atomic_write(md, encoding="utf-8") as f:
        f.write(render_markdown(run))
    return md


def publish(run: Run, out_dir: Path, *, plots: bool) -> Path:
    """Write the run's JSON, CSV, Markdown (PNGs too with ``plots``) into ``out_dir``; the Markdown path."""
    save_run(run, out_dir)
    md = write_markdown(run, out_dir)
    if plots:
        plot_run(run, out_dir)
    return md


def saver(run: Run, out_dir: Path) -> Callable[[Record], None]:
    """The sweep's callback: add a record to ``run`` and rewrite the run's files at once."""
    def save(record: Record) -> None:
        run.results.append(record)
        publish(run, out_dir, plots=False)
    return save
