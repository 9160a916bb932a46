"""A training run's CSV records, read back by the tests that compare runs."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of steps.csv or epochs.csv, as strings."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def step_losses(run_dir: Path) -> dict[int, float]:
    """{step: loss} from a run directory's steps.csv."""
    return {int(row["step"]): float(row["loss"]) for row in read_rows(run_dir / "steps.csv")}
