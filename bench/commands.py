"""What each sub-command does: run the plan, render the report, soak; prints tables for people."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.data import load_jpeg_folder
from bench.isolate import run_isolated
from bench.jobs import Job
from bench.machine import command_line, machine_info, machine_slug, now_iso, today, versions
from bench.plan import PlanSettings, build_plan
from bench.plots import plot_run
from bench.report import render_markdown
from bench.results import load_json, newest_run_file, results_stem, write_run
from bench.workloads import WORKLOADS

_logger = logging.getLogger(__name__)


def _settings(args: argparse.Namespace, device: str) -> PlanSettings:
    return PlanSettings(
        backends=args.backends,
        workloads=args.workloads or (("train",) if args.quick else WORKLOADS),
        device=device,
        batch_size=args.batch_size or (32 if args.quick else 64),
        repeats=args.repeats,
        max_workers=args.max_workers,
        images_per_repeat=128 if args.quick else 640,
        quick=args.quick,
    )


def _run_record(data_root: Path, device: str, quick: bool, argv: list[str]) -> dict[str, Any]:
    info = machine_info()
    data = load_jpeg_folder(data_root, on_bad_file="skip")
    return {"kind": "run", "date": today(), "timestamp": now_iso(), "command": command_line(argv),
            "machine": info, "machine_slug": machine_slug(info), "versions": versions(),
            "device": device, "quick": quick,
            "data": {"name": str(data_root), "images": len(data), "classes": len(data.classes)},
            "results": []}


def _groups(jobs: list[Job], quick: bool) -> list[list[Job]]:
    """One job per process (full run); in quick runs one process per backend, plan order kept."""
    if not quick:
        return [[job] for job in jobs]
    by_backend: dict[str, list[Job]] = {}
    for job in jobs:
        by_backend.setdefault(job.backend, []).append(job)
    return list(by_backend.values())


def _newest_soak(out_dir: Path) -> dict[str, Any] | None:
    soaks = sorted(out_dir.glob("soak-*.json"), key=lambda p: p.stat().st_mtime)
    return load_json(soaks[-1]) if soaks else None


def _publish(run: dict[str, Any], out_dir: Path) -> Path:
    """JSON, CSV, PNGs and Markdown of ``run`` in ``out_dir``; the Markdown's path."""
    write_run(run, out_dir)
    stem = results_stem(run)
    plot_run(run, out_dir, stem)
    md = out_dir / f"{stem}.md"
    md.write_text(render_markdown(run, _newest_soak(out_dir)), encoding="utf-8")
    return md


def run_command(args: argparse.Namespace, data_root: Path, device: str) -> dict[str, Any]:
    """Every planned measurement, each in its own process, then the result files and the tables."""
    out_dir = args.out or (Path(__file__).resolve().parent / "results" / ("_scratch" if args.quick else ""))
    jobs = build_plan(_settings(args, device))
    run = _run_record(data_root, device, args.quick, args.argv)
    with tqdm(total=len(jobs), desc="bench", unit="job") as bar:
        for group in _groups(jobs, args.quick):
            bar.set_postfix_str(group[0].label())
            for record in run_isolated(group, str(data_root), args.timeout):
                run["results"].append(record)
                bar.update()
                # Written after every job, so an interrupted run keeps what it measured.
                write_run(run, out_dir)
    md = _publish(run, out_dir)
    print(md.read_text(encoding="utf-8"))
    print(f"results: {out_dir}/{results_stem(run)}.{{json,csv,md}} and *.png")
    return run


def report_command(out_dir: Path) -> str:
    """Render the newest run in ``out_dir`` (re-plotting it) and print the Markdown."""
    run = load_json(newest_run_file(out_dir))
    md = _publish(run, out_dir)
    text = md.read_text(encoding="utf-8")
    print(text)
    return text


def soak_command(args: argparse.Namespace, data_root: Path) -> dict[str, Any]:
    """Soak the DALI train graph on the chosen devices and write the soak files."""
    import torch

    from bench.soak import GROWTH_TARGET_PCT, run_soak, write_soak

    devices = ["cpu", "gpu"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    if "gpu" in devices and not torch.cuda.is_available():
        raise ValueError("--device gpu needs a CUDA GPU and none is visible; use --device cpu or auto")
    data = load_jpeg_folder(data_root, on_bad_file="skip")
    run = run_soak(data, devices, args.epochs, args.batch_size, args.threads)
    run["command"] = command_line(args.argv)
    paths = write_soak(run, args.out)
    for device, s in run["summary"].items():
        print(f"{device}: RSS {s['rss_epoch2_mb']:.0f} MiB after epoch 2 -> {s['rss_last_mb']:.0f} MiB "
              f"after epoch {s['epochs']} ({s['rss_growth_pct']:+.1f}%, target < {GROWTH_TARGET_PCT:g}%)")
    print("soak results: " + ", ".join(map(str, paths)))
    return run
