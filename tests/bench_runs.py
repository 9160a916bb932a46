"""Typed bench runs for report tests: the committed run's header with records of given rates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bench.records import Record, Run

COMMITTED = Path(__file__).resolve().parent.parent / "bench" / "results" / "cpu-2core-2026-11-25-183443.json"


def committed_run() -> Run:
    """The newest committed CPU run, as the report reads it."""
    return Run.from_dict(json.loads(COMMITTED.read_text(encoding="utf-8")))


def record(section: str, backend: str, workload: str, images_per_s: float, *, source: str = "files",
           cpu_s_per_1000: float | None = None) -> Record:
    """A measured record of the committed run, changed to these fields and rate."""
    template = next(r for r in committed_run().results if r.section == "throughput" and r.ok)
    assert template.measurement is not None
    measurement = dataclasses.replace(template.measurement, images_per_s=images_per_s)
    if cpu_s_per_1000 is not None:
        measurement = dataclasses.replace(measurement, cpu_s_per_1000=cpu_s_per_1000)
    return dataclasses.replace(template, section=section, backend=backend, workload=workload, source=source,
                               measurement=measurement)


def run_of(device: str, records: list[Record]) -> Run:
    """The committed run's header on ``device`` with exactly ``records``."""
    template = committed_run()
    return dataclasses.replace(template, settings=dataclasses.replace(template.settings, device=device),
                               results=records)
