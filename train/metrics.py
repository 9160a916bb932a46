"""Run records on rank 0: steps.csv, epochs.csv and TensorBoard scalars in the run directory."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

STEP_FIELDS = ("step", "epoch", "loss", "lr", "data_ms", "compute_ms", "images_per_s")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                "val_images", "images_per_s", "data_wait_pct", "gpu_idle_pct", "seconds")


class MetricsLog:
    """Appends rows to CSV files (kept across --resume) and mirrors them to TensorBoard."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self._writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._steps = _CsvFile(run_dir / "steps.csv", STEP_FIELDS)
        self._epochs = _CsvFile(run_dir / "epochs.csv", EPOCH_FIELDS)
        # TensorBoard imports TensorFlow when it is installed (the `tf` extra); keep its C++ logs quiet.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from torch.utils.tensorboard import SummaryWriter  # ~1 s import; only rank 0 pays it

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def step(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self._steps.write(row)
            for key in ("loss", "lr", "data_ms", "compute_ms", "images_per_s"):
                self._writer.add_scalar(f"step/{key}", row[key], row["step"])

    def epoch(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self._epochs.write(row)
            for key, value in row.items():
                if key not in ("epoch", "step") and value is not None and not _isnan(value):
                    self._writer.add_scalar(f"epoch/{key}", value, row["epoch"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class _CsvFile:
    """A CSV file with a fixed header, appended to and flushed per row."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._handle = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - lives with the run
        self._writer = csv.DictWriter(self._handle, fieldnames=fields)
        if new:
            self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in self._writer.fieldnames})
        self._handle.flush()
