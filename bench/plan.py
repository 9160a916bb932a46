"""Which measurements a run makes: the full sweep or the quick demo, for this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from bench.jobs import SYNTHETIC, Job
from bench.workloads import RunSpec

SCALING_BATCH_SIZES = (16, 32, 64, 128)
HW_DECODER_LOADS = (0.0, 0.25, 0.5, 0.65, 0.75, 1.0)
OVERLAP_STEP_MS = (100.0, 250.0)  # simulated accelerator: 640 and 256 img/s at batch 64
E2E_BATCH_SIZE = 256  # GoogLeNet, AMP: the end-to-end setting


@dataclass(frozen=True)
class PlanSettings:
    """Knobs of a run, already validated by the CLI."""

    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    device: str  # "cpu" | "cuda": where batches are delivered
    batch_size: int = 64
    repeats: int = 3
    max_workers: int = os.cpu_count() or 1
    images_per_repeat: int = 640  # timed images per repeat (rounded to whole batches)
    quick: bool = False


def _bpr(settings: PlanSettings, batch_size: int) -> int:
    return max(3, settings.images_per_repeat // batch_size)


def _job(settings: PlanSettings, section: str, backend: str, **spec: object) -> Job:
    # naive is sequential: one worker, whatever the setting, so tables show what ran.
    workers = 1 if backend == "naive" else settings.max_workers
    fields = {"batch_size": settings.batch_size, "workers": workers, "device": settings.device, **spec}
    run = RunSpec(**fields)  # type: ignore[arg-type]
    return Job(section, backend, run, warmup_batches=2 if settings.quick else 3,
               repeats=settings.repeats, batches_per_repeat=_bpr(settings, run.batch_size))


def throughput_jobs(s: PlanSettings) -> list[Job]:
    """Every backend on every workload at the default batch size and all cores."""
    return [_job(s, "throughput", b, workload=w) for w in s.workloads for b in s.backends]


def scaling_jobs(s: PlanSettings) -> list[Job]:
    """Train workload over workers 1..max (not naive: it has none) and over batch sizes."""
    workers = [_job(s, "scaling-workers", b, workload="train", workers=n)
               for b in s.backends if b != "naive" for n in range(1, s.max_workers)]
    batches = [_job(s, "scaling-batch", b, workload="train", batch_size=size)
               for b in s.backends for size in SCALING_BATCH_SIZES if size != s.batch_size]
    return workers + batches


def hw_decoder_jobs(s: PlanSettings) -> list[Job]:
    """dali-gpu train throughput over ``hw_decoder_load`` (GPU runs only)."""
    if "dali-gpu" not in s.backends or s.device != "cuda":
        return []
    return [_job(s, "hw-decoder", "dali-gpu", workload="train", hw_decoder_load=load)
            for load in HW_DECODER_LOADS]


def overlap_jobs(s: PlanSettings, steps_ms: Sequence[float]) -> list[Job]:
    """Each backend (and synthetic data) feeding a simulated accelerator step of each length."""
    jobs = []
    for ms in steps_ms:
        for backend in (SYNTHETIC, *s.backends):
            job = _job(s, "overlap", backend, workload="train")
            jobs.append(Job(job.section, backend, job.spec, job.warmup_batches, job.repeats,
                            job.batches_per_repeat, step_ms=ms))
    return jobs


def e2e_jobs(s: PlanSettings) -> list[Job]:
    """GoogLeNet training steps fed by each backend and by synthetic on-device data (GPU only)."""
    if s.device != "cuda":
        return []
    return [_job(s, "e2e", b, workload="train", batch_size=E2E_BATCH_SIZE) for b in (SYNTHETIC, *s.backends)]


def build_plan(s: PlanSettings) -> list[Job]:
    """The quick demo (train throughput + one overlap setting) or the full sweep."""
    if s.quick:
        return throughput_jobs(s) + overlap_jobs(s, OVERLAP_STEP_MS[:1])
    steps = OVERLAP_STEP_MS if s.device == "cpu" else ()
    return (throughput_jobs(s) + scaling_jobs(s) + hw_decoder_jobs(s) + overlap_jobs(s, steps)
            + e2e_jobs(s))
