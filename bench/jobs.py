"""One measurement to run: which backend, which work, which consumer; and running it here."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.backends import get_backend
from bench.data import load_jpeg_folder
from bench.runner import Measurement, measure_throughput
from bench.steps import GoogLeNetStep, SleepStep, SyntheticBatches
from bench.workloads import RunSpec

_logger = logging.getLogger(__name__)

SECTIONS = ("throughput", "scaling-workers", "scaling-batch", "hw-decoder", "overlap", "e2e")
SYNTHETIC = "synthetic"  # the "speed of light" input of the overlap and e2e sections


@dataclass(frozen=True)
class Job:
    """A single measurement; ``step_ms`` only for ``overlap``."""

    section: str
    backend: str
    spec: RunSpec
    warmup_batches: int = 3
    repeats: int = 3
    batches_per_repeat: int | None = 10
    step_ms: float = 0.0

    def label(self) -> str:
        """Short human label for progress bars and logs."""
        extra = f" step={self.step_ms:g}ms" if self.section == "overlap" else ""
        return (f"{self.section}: {self.backend} {self.spec.workload} bs={self.spec.batch_size} "
                f"w={self.spec.workers}{extra}")

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (the spec's fields inline)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "spec"}
        return {**out, **self.spec.to_dict()}


def skip_reason(job: Job) -> str | None:
    """Why ``job`` cannot run on this machine, or None."""
    if job.backend == SYNTHETIC:
        return "needs a CUDA GPU" if job.section == "e2e" and not torch.cuda.is_available() else None
    return get_backend(job.backend).unavailable_reason(job.spec.device)


def _consumer(job: Job, num_classes: int) -> SleepStep | GoogLeNetStep | None:
    if job.section == "overlap":
        return SleepStep(job.step_ms)
    if job.section == "e2e":
        return GoogLeNetStep(num_classes)
    return None


def execute(job: Job, data_root: str) -> dict[str, Any]:
    """Run ``job`` in this process over the ImageFolder at ``data_root``; a result record."""
    record: dict[str, Any] = {**job.to_dict(), "load_avg_1m": os.getloadavg()[0]}
    reason = skip_reason(job)
    if reason:
        return {**record, "status": "skipped", "reason": reason}
    # The parent verified already (and stopped on bad files unless told to skip): a cache hit.
    data = load_jpeg_folder(Path(data_root), on_bad_file="skip")
    step = _consumer(job, len(data.classes))
    if job.backend == SYNTHETIC:
        def make() -> SyntheticBatches:
            return SyntheticBatches(job.spec.batch_size, len(data.classes), job.spec.device)
    else:
        factory = get_backend(job.backend).factory()

        def make():  # type: ignore[no-redef]
            return factory(data, job.spec)
    measurement: Measurement = measure_throughput(
        make, warmup_batches=job.warmup_batches, repeats=job.repeats,
        batches_per_repeat=job.batches_per_repeat, step=step, gpu=job.spec.device == "cuda",
        after_warmup=step.reset if isinstance(step, GoogLeNetStep) else None)
    record.update(status="ok", reason="", measurement=measurement.to_dict())
    if isinstance(step, GoogLeNetStep):
        record["gpu_idle_frac"] = step.gpu_idle_fraction()  # gaps between steps on the GPU timeline
    return record
