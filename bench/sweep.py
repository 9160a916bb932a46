"""The sweep: sections -> jobs, each job measured in a fresh process, the record saved at once.

A section is a question (how fast is each backend; how does it scale with workers; what does
feeding GoogLeNet cost ...); a job is one measurement. Jobs run one at a time, each in a
fresh process forked from a server that has imported torch and torchvision only (no CUDA,
no DALI, no TensorFlow yet), so thread pools, memory pools and peak memory start clean for
every job without paying torch's import each time. TensorFlow is imported only in its own jobs, where
forking DataLoader workers after it never happens. A job whose backend cannot do its workload
(the registry's ``skips``) is recorded as skipped, with the reason, and costs no process.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.backends import BACKENDS, RunSpec, get_backend
from bench.measure import GoogLeNetStep, Measurement, SleepStep, StepFigures, SyntheticBatches, measure
from bench.records import Record, Settings, Status
from bench.scale import ScaleFigures, measure_scale
from dali_pipelines import DataSource, ImageFolderData

_logger = logging.getLogger(__name__)

SECTIONS = ("throughput", "scaling", "hw-decoder", "overlap", "e2e", "soak", "shards", "scale")
GPU_SECTIONS = ("hw-decoder", "e2e")  # need --device gpu
DEFAULT_SECTIONS = {"cpu": ("throughput", "scaling", "overlap", "soak", "shards"),
                    "gpu": ("throughput", "scaling", "hw-decoder", "e2e", "soak", "shards")}
QUICK_SECTIONS = {"cpu": ("throughput", "overlap"), "gpu": ("throughput", "e2e")}
# On CPU, what RandAugment costs each loader is the headline; on a GPU it doubles --quick's jobs.
QUICK_WORKLOADS = {"cpu": ("train", "train-aug"), "gpu": ("train",)}
SYNTHETIC = "synthetic"  # the "speed of light" input of the overlap and e2e sections

SCALING_BACKENDS = ("torch-pil", "dali-cpu", "dali-gpu")  # the usual PyTorch loader and ours
HW_DECODER_LOADS = (0.0, 0.65, 1.0)  # nvJPEG's share for the hardware decoder (0.65: DALI's default)
OVERLAP_STEP_MS = (100.0, 250.0)  # the simulated accelerator's time per batch
E2E_BATCH_SIZE = 256
E2E_BACKENDS = ("dali-gpu", "dali-ref", "torchvision-gpu")  # those delivering from GPU decoding
# train-aug in e2e: RandAugment on the GPU (this project's graph) against the fastest DataLoader
# doing it on CPU workers and copying to the GPU (torch-tv: faster than torch-pil at it).
E2E_AUG_BACKENDS = ("dali-gpu", "torch-tv")
DALI_FOR_DEVICE = {"cpu": "dali-cpu", "gpu": "dali-gpu"}  # the graph soaked and read from shards
START_S = 1.5  # rough per-job cost outside the timed loop (fork, imports, graph build): estimates only
# The scale section's least cost per file (mostly the cold header pass) and per job (five fresh
# interpreters importing DALI and torch): estimates only.
SCALE_S_PER_FILE, SCALE_START_S = 1.5e-4, 30.0
# Imported once in the server that forks every job; nothing here may touch CUDA or start threads.
_PRELOAD = ["torch", "torchvision", "numpy", "PIL.Image", "psutil", "bench.measure"]


@dataclass(frozen=True)
class Job:
    """One measurement: which backend, which work, how long, fed to what, from which source."""

    section: str
    backend: str
    spec: RunSpec
    warmup_s: float
    repeat_s: float
    repeat_images: int
    repeats: int
    warmup_batches: int = 1
    passes: bool = False  # each repeat one full epoch (soak)
    step_ms: float = 0.0  # overlap: simulated accelerator step per batch
    source: str = "files"  # "files" | "shards" (shards section)
    scale_files: int = 0  # scale: the tree's size (its record carries it in ``scale``)

    def label(self) -> str:
        """Short human label for progress lines and logs."""
        if self.section == "scale":
            return (f"scale: {self.scale_files} files, {self.backend} bs={self.spec.batch_size} "
                    f"w={self.spec.workers}")
        extra = {"overlap": f" step={self.step_ms:g}ms", "shards": f" from {self.source}",
                 "hw-decoder": f" hw_decoder_load={self.spec.hw_decoder_load}"}.get(self.section, "")
        return (f"{self.section}: {self.backend} {self.spec.workload} bs={self.spec.batch_size} "
                f"w={self.spec.workers}{extra}")

    def to_dict(self) -> dict[str, Any]:
        """The job's fields with the spec's inline: how its ``Record`` begins."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("spec", "scale_files")}
        return {**out, **self.spec.to_dict()}

    def skip_reason(self) -> str | None:
        """Why the backend does not do this job's workload (then nothing runs); None if it does."""
        return None if self.backend == SYNTHETIC else BACKENDS[self.backend].skip_reason(self.spec.workload)

    def minimum_s(self) -> float:
        """Least time this job can take, for plan estimates (full-pass and skipped jobs: 0)."""
        if self.passes or self.skip_reason():
            return 0.0
        if self.section == "scale":
            return SCALE_START_S + SCALE_S_PER_FILE * self.scale_files
        return self.warmup_s + self.repeats * self.repeat_s

    def timeout_s(self, default: float) -> float:
        """Seconds this job may take: ``default``, or for a scale tree ten times its estimate."""
        return max(default, 10 * self.minimum_s()) if self.section == "scale" else default


# ---------------------------------------------------------------- planning

def _job(s: Settings, section: str, backend: str, *, workload: str = "train", **fields: Any) -> Job:
    spec_fields = {k: fields.pop(k) for k in ("batch_size", "workers", "hw_decoder_load") if k in fields}
    workers = 1 if backend in ("naive", SYNTHETIC) else s.max_workers  # naive is sequential
    spec = RunSpec(**{"workload": workload, "batch_size": s.batch_size, "workers": workers,
                      "device": s.device, **spec_fields})
    return Job(section, backend, spec, warmup_s=s.warmup_s, repeat_s=s.repeat_s,
               repeat_images=s.repeat_batches * spec.batch_size, repeats=s.repeats, **fields)


def worker_counts(max_workers: int) -> list[int]:
    """1, 2, 4, 8, ... below ``max_workers`` (the throughput section measures ``max_workers``)."""
    counts, n = [], 1
    while n < max_workers:
        counts.append(n)
        n *= 2
    return counts


def plan_section(s: Settings, section: str) -> list[Job]:
    """The jobs of one section for these settings."""
    if section == "throughput":
        return [_job(s, section, b, workload=w) for w in s.workloads for b in s.backends]
    if section == "scaling":
        return [_job(s, section, b, workers=n) for b in s.backends if b in SCALING_BACKENDS
                for n in worker_counts(s.max_workers)]
    if section == "hw-decoder":
        return [_job(s, section, "dali-gpu", hw_decoder_load=load) for load in HW_DECODER_LOADS
                if "dali-gpu" in s.backends]
    if section == "overlap":
        steps = OVERLAP_STEP_MS[:1] if s.quick else OVERLAP_STEP_MS
        return [_job(s, section, b, step_ms=ms) for ms in steps for b in (SYNTHETIC, *s.backends)]
    if section == "e2e":
        loaders = [("train", b) for b in s.backends if b in E2E_BACKENDS]
        if "train-aug" in s.workloads:
            loaders += [("train-aug", b) for b in E2E_AUG_BACKENDS if b in s.backends]
        # More warm-up batches: cuDNN picks its kernels on the first steps.
        return [_job(s, section, b, workload=w, batch_size=E2E_BATCH_SIZE, warmup_batches=5)
                for w, b in (("train", SYNTHETIC), *loaders)] if loaders else []
    backend = DALI_FOR_DEVICE[s.device]
    if backend not in s.backends:
        return []
    if section == "soak":  # epoch 1 is the warm-up pass; every later epoch is a repeat
        return [dataclasses.replace(_job(s, section, backend), passes=True, repeats=s.soak_epochs)]
    if section == "shards":
        return [_job(s, section, backend, source=src) for src in ("files", "shards")]
    if section == "scale":
        return [_job(s, section, backend, scale_files=n) for n in s.scale_files]
    raise ValueError(f"unknown section {section!r}; accepted: {', '.join(SECTIONS)}")


def plan(s: Settings) -> dict[str, list[Job]]:
    """Every selected section's jobs, in section order; sections without jobs left out."""
    sections = {name: plan_section(s, name) for name in SECTIONS if name in s.sections}
    return {name: jobs for name, jobs in sections.items() if jobs}


# ---------------------------------------------------------------- running one job (in the child)

def _record(job: Job, status: Status, reason: str = "", *, measurement: Measurement | None = None,
            consumer: StepFigures | None = None, trace: str | None = None,
            scale: ScaleFigures | None = None) -> Record:
    """The record of ``job``: its fields, the outcome, the figures, the machine's load now."""
    return Record(**job.to_dict(), status=status, reason=reason, measurement=measurement, consumer=consumer,
                  load_avg_1m=os.getloadavg()[0], traceback=trace, scale=scale)


def execute(job: Job, data: DataSource) -> Record:
    """Measure ``job`` in this process over ``data`` (already verified); its record."""
    if job.section == "scale":
        if not isinstance(data, ImageFolderData):
            raise TypeError(f"the scale section links to loose JPEG files; got {type(data).__name__}")
        spec = job.spec
        figures = measure_scale(job.scale_files, data, batch_size=spec.batch_size, threads=spec.workers,
                                device=spec.device, timeout_s=job.timeout_s(600.0))
        return _record(job, "ok", scale=figures)
    step: Any = None
    if job.section == "overlap":
        step = SleepStep(job.step_ms)
    elif job.section == "e2e":
        step = GoogLeNetStep(len(data.classes))
    if job.backend == SYNTHETIC:
        def make() -> SyntheticBatches:
            return SyntheticBatches(job.spec.batch_size, len(data.classes), job.spec.torch_device)
    else:
        factory = get_backend(job.backend).factory()

        def make():  # type: ignore[no-redef]
            return factory(data, job.spec)
    m = measure(make, warmup_s=job.warmup_s, warmup_batches=job.warmup_batches, repeat_s=job.repeat_s,
                repeat_images=job.repeat_images, repeats=job.repeats, passes=job.passes, step=step,
                gpu=job.spec.device == "gpu")
    return _record(job, "ok", measurement=m, consumer=step.summary() if hasattr(step, "summary") else None)


def _child(job: Job, data: DataSource, conn: Connection) -> None:
    # Runs in the forked job process: one record back through the pipe, whatever happens.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        conn.send(execute(job, data))
    except Exception as err:  # any failure becomes a record, never a lost run
        conn.send(_record(job, "error", f"{type(err).__name__}: {err}", trace=traceback.format_exc()))
    finally:
        conn.close()


# ---------------------------------------------------------------- running the sweep (in the parent)

def _context() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def run_job(job: Job, data: DataSource, timeout_s: float) -> Record:
    """``job`` measured in a fresh process; an error record if it fails, dies or times out."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: daemonic processes may not start DataLoader workers of their own.
    proc = ctx.Process(target=_child, args=(job, data, child), name=f"bench-{job.section}-{job.backend}")
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            return _record(job, "error", f"timed out after {timeout_s:.0f} s (--timeout)")
        return parent.recv()
    except EOFError:
        proc.join(timeout=10)
        return _record(job, "error", f"the job's process died (exit code {proc.exitcode})")
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()


class Progress:
    """One line per finished job on stderr: readable live in a terminal and later in a log file."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()

    def __call__(self, job: Job, record: Record) -> None:
        self.done += 1
        minutes, seconds = divmod(int(time.perf_counter() - self.start), 60)
        if record.measurement is not None:
            m = record.measurement
            outcome = f"{m.images_per_s:.0f} img/s ({m.images_per_s_min:.0f}-{m.images_per_s_max:.0f})"
        elif record.scale is not None:
            f = record.scale
            outcome = (f"scan {f.scan_s:.2f} s, verify {f.cold_verify_s:.1f} s cold "
                       f"(+{f.cold_verify_peak_mb:.0f} MiB) / {f.warm_verify_s:.2f} s warm, loader "
                       f"{f.loader_s:.2f} s (+{f.loader_peak_mb:.0f} MiB)")
        else:
            outcome = f"{record.status}: {record.reason}"
        width = len(str(self.total))
        print(f"[{self.done:>{width}}/{self.total} {minutes}:{seconds:02d}] {job.label()}: {outcome}",
              file=self.stream, flush=True)


def run_sweep(sections: dict[str, list[Job]], sources: dict[str, DataSource], timeout_s: float,
              save: Callable[[Record], None]) -> None:
    """Run every job in order; ``save`` gets each record as soon as it exists."""
    progress = Progress(sum(len(jobs) for jobs in sections.values()))
    for jobs in sections.values():
        for job in jobs:
            reason = job.skip_reason()
            if reason:
                record = _record(job, "skipped", reason)
            else:
                record = run_job(job, sources[job.source], job.timeout_s(timeout_s))
            save(record)
            progress(job, record)


def describe_plan(sections: dict[str, list[Job]]) -> str:
    """One line: jobs per section and the least time they take."""
    jobs = [job for section in sections.values() for job in section]
    parts = ", ".join(f"{name} {len(section)}" for name, section in sections.items())
    skipped = sum(job.skip_reason() is not None for job in jobs)
    note = f", {skipped} skipped" if skipped else ""
    return f"{len(jobs)} jobs ({parts}{note}); at least {least_s(sections) / 60:.1f} min"


def least_s(sections: dict[str, list[Job]]) -> float:
    """Least seconds the plan takes: timed minimums plus a rough start-up per job that runs."""
    jobs = [job for section in sections.values() for job in section if not job.skip_reason()]
    return sum(job.minimum_s() + START_S for job in jobs)


def data_sources(files: ImageFolderData, shards: DataSource | None) -> dict[str, DataSource]:
    """What a job's ``source`` names."""
    return {"files": files} if shards is None else {"files": files, "shards": shards}
