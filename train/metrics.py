"""Run records on rank 0: steps.csv, epochs.csv and TensorBoard scalars in the run directory.

Losses: ``loss`` (steps.csv) and ``train_loss`` (epochs.csv) are the main head's criterion loss
(with --label-smoothing, against the mixed targets under mixup / cutmix), the footing of
``val_loss`` (plain cross-entropy of the main head against the true labels); GoogLeNet's
auxiliary heads' weighted share of what is optimized (0.3 x (aux1 + aux2)) is ``aux_loss`` /
``train_aux_loss``, empty for models without them. The optimized loss is their sum.

Rates: every ``images_per_s`` is images over the wall time of a span, all ranks together: in
steps.csv the span since the previous row (``log_every`` steps), whose mean time per optimizer
step is split into ``data_ms`` (waiting for the loader) + ``compute_ms`` (the host's time in the
step); in epochs.csv the epoch's training time (``seconds``, evaluation not included).

``train_top1`` counts a prediction correct when it is the sample's label; with mixup / cutmix,
the label holding the larger share of the mixed sample (its own when lambda >= 0.5, else its
partner's). ``ema_val_*`` are the weights' EMA's scores, empty when --ema-decay is 0.
``train_size`` is the epoch's training crop side (it changes under --progressive-resize).
"""

from __future__ import annotations

import csv
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dali_pipelines._util.atomic import atomic_write

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

STEP_FIELDS = ("step", "epoch", "loss", "aux_loss", "lr", "data_ms", "compute_ms", "images_per_s")
EPOCH_FIELDS = ("epoch", "step", "train_size", "train_loss", "train_aux_loss", "train_top1", "val_loss",
                "val_top1", "val_top5", "val_images", "ema_val_loss", "ema_val_top1", "ema_val_top5",
                "images_per_s", "data_wait_pct", "gpu_idle_pct", "seconds")


class MetricsLog:
    """Appends rows to CSV files and mirrors them to TensorBoard (x axis: the optimizer step).

    A resumed run first cuts the records back to its checkpoint: step rows after the
    checkpoint's step (written before a crash) and the row of an epoch the checkpoint is in
    the middle of (a --max-steps stop's partial row) go, and are written again as training
    repeats them, so every step and epoch has exactly one row.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, resumed_at: tuple[int, int] | None = None) -> None:
        """``resumed_at``: the checkpoint's (epoch, step) when continuing a run."""
        self.enabled = enabled
        self._writer: SummaryWriter | None = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        steps, epochs = run_dir / "steps.csv", run_dir / "epochs.csv"
        if resumed_at is not None:
            epoch, step = resumed_at
            _keep_rows(steps, STEP_FIELDS, lambda row: int(row["step"]) <= step)
            _keep_rows(epochs, EPOCH_FIELDS, lambda row: int(row["epoch"]) < epoch)
        self._steps = _CsvFile(steps, STEP_FIELDS)
        self._epochs = _CsvFile(epochs, EPOCH_FIELDS)
        # purge_step hides events a crashed run wrote past the checkpoint.
        self._writer = _summary_writer(run_dir / "tensorboard",
                                       purge_step=None if resumed_at is None else resumed_at[1] + 1)

    def step(self, row: dict[str, Any]) -> None:
        if self._writer is not None:
            self._steps.write(row)
            for key in ("loss", "aux_loss", "lr", "data_ms", "compute_ms", "images_per_s"):
                if row.get(key) is not None:
                    self._writer.add_scalar(f"step/{key}", row[key], row["step"])

    def epoch(self, row: dict[str, Any]) -> None:
        if self._writer is not None:
            self._epochs.write(row)
            for key, value in row.items():
                if key not in ("epoch", "step") and value is not None and not _isnan(value):
                    self._writer.add_scalar(f"epoch/{key}", value, row["step"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.enabled:
            self._steps.close()
            self._epochs.close()


def _summary_writer(log_dir: Path, purge_step: int | None) -> SummaryWriter:
    """torch's TensorBoard writer on TensorBoard's own TensorFlow stub.

    Where TensorFlow is installed (the `tf` extra), TensorBoard's lazy ``tf`` imports it to write
    event files: seconds of start-up and a C++ banner for nothing the writer needs. An importable
    ``tensorboard.compat.notf`` is TensorBoard's switch to its bundled stub (the path it takes
    where TensorFlow is absent).
    """
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter  # a slow import: only rank 0 pays it

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _keep_rows(path: Path, fields: tuple[str, ...], keep: Callable[[dict[str, str]], bool]) -> None:
    """Rewrite ``path`` (atomically) with only the rows ``keep`` accepts, under the header ``fields``
    (a column the file lacks stays empty in its rows)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if _well_formed(row, tuple(reader.fieldnames or ())) and keep(row)]
    with atomic_write(path, newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _well_formed(row: dict[str, str], fields: tuple[str, ...]) -> bool:
    # A row cut short by a crash mid-write lacks its last fields (None) or has a partial number.
    return bool(fields) and all(row.get(name) is not None for name in fields) and row[fields[0]].isdigit()


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

    def close(self) -> None:
        self._handle.close()
