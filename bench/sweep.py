"""The sweep: sections -> jobs, each job measured in a fresh process, the record saved at once.

A section is a question (how fast is each backend; how does it scale with workers; what does
feeding a training step cost ...); a job is one measurement. Jobs run one at a time, each in a
fresh process forked from a server that has imported torch and torchvision only (no CUDA,
no DALI, no TensorFlow yet), so thread pools, memory pools and peak memory start clean for
every job without paying torch's import each time. TensorFlow is imported only in its own jobs, where
forking DataLoader workers after it never happens. A job whose backend cannot do its workload
(the registry's ``skips``) is recorded as skipped, with the reason, and costs no process.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench import storage
from bench.backends import RunSpec, get_backend
from bench.failures import died_reason, failure_reason
from bench.measure import Measurement, SleepStep, StepFigures, SyntheticBatches, TimedTrainingStep, measure
from bench.records import Record, Settings, Status, TuneFigures
from bench.scale import S3_MAX_FILES, ScaleFigures, measure_scale
from bench.tuning import HILL_S, ROUNDS, expected_s, measure_spec, run_tune_section
from dali_pipelines import DataSource, ImageFolderData
from dali_pipelines.config import default_num_threads
from dali_pipelines.tune import MeasureSpec

_logger = logging.getLogger(__name__)

SECTIONS = ("throughput", "scaling", "hw-decoder", "overlap", "e2e", "e2e-sweep", "soak", "shards", "capped",
            "storage", "tune", "scale")
GPU_SECTIONS = ("hw-decoder", "e2e", "e2e-sweep")  # need --device gpu
# tune is named in a GPU run (--sections ...,tune): it adds minutes to the GPU sweep's eight.
DEFAULT_SECTIONS = {
    "cpu": ("throughput", "scaling", "overlap", "soak", "shards", "capped", "storage", "tune"),
    "gpu": ("throughput", "scaling", "hw-decoder", "e2e", "soak", "shards", "storage"),
}
QUICK_SECTIONS = {"cpu": ("throughput", "overlap"), "gpu": ("throughput", "e2e")}
# On CPU, what RandAugment costs each loader is the headline; on a GPU it doubles --quick's jobs.
QUICK_WORKLOADS = {"cpu": ("train", "train-aug"), "gpu": ("train",)}
SYNTHETIC = "synthetic"  # the "speed of light" input of the overlap and e2e sections

SCALING_BACKENDS = ("torch-pil", "dali-cpu", "dali-gpu")  # the usual PyTorch loader and ours
HW_DECODER_LOADS = (0.0, 0.65, 1.0)  # nvJPEG's share for the hardware decoder (0.65: DALI's default)
OVERLAP_STEP_MS = (100.0, 250.0)  # the simulated accelerator's time per batch
E2E_BATCH_SIZE = 256
E2E_MODELS = {"googlenet": "GoogLeNet", "resnet50": "ResNet-50"}  # e2e's model (Settings.e2e_model): its name
E2E_BACKENDS = ("dali-gpu", "dali-ref", "torchvision-gpu")  # those delivering from GPU decoding
# train-aug in e2e: RandAugment on the GPU (this project's graph) against the fastest DataLoader
# doing it on CPU workers and copying to the GPU (torch-tv: faster than torch-pil at it).
E2E_AUG_BACKENDS = ("dali-gpu", "torch-tv")
# e2e-sweep: dali-gpu feeding the e2e step over DALI threads x hw_decoder_load x prefetch depth
# (threads above --max-workers are left out).
E2E_SWEEP_THREADS = (4, 8, 16)
E2E_SWEEP_LOADS = (1.0, 0.65)
E2E_SWEEP_PREFETCH = (2, 3)
DALI_FOR_DEVICE = {"cpu": "dali-cpu", "gpu": "dali-gpu"}  # the graph soaked and read from shards
# capped: shards with images capped at these longer sides (to-shards --max-side; FFCV's benchmark
# sizes) against the same shards uncapped, read by the CPU graph: its decode cost is the question
# (a default section on CPU; on a GPU run only when --sections asks for it).
CAPPED_SIDES = (512, 384, 256)
UNCAPPED = "uncapped"
START_S = 1.5  # rough per-job cost outside the timed loop (fork, imports, graph build): estimates only
# The scale section's least cost per file (mostly the cold header pass), per file put into the
# bucket (trees up to S3_MAX_FILES), and per job (fresh interpreters importing DALI and torch):
# estimates only.
SCALE_S_PER_FILE, SCALE_S_PER_OBJECT, SCALE_START_S = 1.5e-4, 2e-3, 30.0
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
    source: str = "files"  # "files" | "shards" (shards section) | "uncapped" | "capped-N" (capped);
    # storage.SOURCES (storage section)
    scale_files: int = 0  # scale: the tree's size (its record carries it in ``scale``)
    model: str | None = None  # e2e, e2e-sweep: the model the step trains (its record names it)

    def label(self) -> str:
        """Short human label for progress lines and logs."""
        if self.section == "scale":
            return (f"scale: {self.scale_files} files, {self.backend} bs={self.spec.batch_size} "
                    f"w={self.spec.workers}")
        extra = {"overlap": f" step={self.step_ms:g}ms", "shards": f" from {self.source}",
                 "storage": f" from {self.source}",
                 "capped": f" from {self.source}",
                 "hw-decoder": f" hw_decoder_load={self.spec.hw_decoder_load}",
                 "e2e-sweep": f" hw_decoder_load={self.spec.hw_decoder_load} prefetch={self.spec.prefetch}",
                 "tune": f" climb ({HILL_S:g} s), grid, {ROUNDS} rounds in turn",
                 }.get(self.section, "")
        trains = f" {self.model}" if self.model else ""
        return (f"{self.section}: {self.backend} {self.spec.workload} bs={self.spec.batch_size} "
                f"w={self.spec.workers}{trains}{extra}")

    def to_dict(self) -> dict[str, Any]:
        """The job's fields with the spec's inline: how its ``Record`` begins."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("spec", "scale_files")}
        return {**out, **self.spec.to_dict()}

    def skip_reason(self) -> str | None:
        """Why the backend does not do this job's workload, or its source cannot be served here
        (then nothing runs); None if it does."""
        if self.source in storage.S3_SOURCES and (reason := storage.unavailable_reason()):
            return f"the local S3 server {reason}"
        if self.backend == SYNTHETIC:
            return None
        return get_backend(self.backend).skip_reason(self.spec.workload)

    def minimum_s(self) -> float:
        """Least time this job can take, for plan estimates (full-pass and skipped jobs: 0; tune:
        the climb's budget and every scoring after it at its least)."""
        if self.passes or self.skip_reason():
            return 0.0
        if self.section == "scale":
            bucket = self.scale_files <= S3_MAX_FILES and storage.unavailable_reason() is None
            return SCALE_START_S + (SCALE_S_PER_FILE + bucket * SCALE_S_PER_OBJECT) * self.scale_files
        if self.section == "tune":
            return expected_s(self.spec, self.measure_spec())
        return self.warmup_s + self.repeats * self.repeat_s

    def timeout_s(self, default: float) -> float:
        """Seconds this job may take: ``default``, or for a scale tree ten times its estimate."""
        return max(default, 10 * self.minimum_s()) if self.section == "scale" else default

    def measure_spec(self) -> MeasureSpec:
        """The job's timing as the tuner's measurement (the tune section's scorings)."""
        return MeasureSpec(warmup_s=self.warmup_s, warmup_batches=self.warmup_batches, repeat_s=self.repeat_s,
                           repeat_batches=max(1, self.repeat_images // self.spec.batch_size),
                           repeats=self.repeats)


# ---------------------------------------------------------------- planning

def _job(s: Settings, section: str, backend: str, *, workload: str = "train", **fields: Any) -> Job:
    spec_fields = {k: fields.pop(k) for k in ("batch_size", "workers", "hw_decoder_load", "prefetch")
                   if k in fields}
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


def sweep_points(max_workers: int) -> list[tuple[int, float, int]]:
    """The e2e-sweep's (threads, hw_decoder_load, prefetch) points: the first point, then those
    differing from it in one setting, then in two, ...; so any first few vary each setting."""
    threads = [t for t in E2E_SWEEP_THREADS if t <= max_workers] or [max_workers]
    grid = list(itertools.product(threads, E2E_SWEEP_LOADS, E2E_SWEEP_PREFETCH))
    return sorted(grid, key=lambda point: sum(a != b for a, b in zip(point, grid[0], strict=True)))


def _throughput(s: Settings, section: str) -> list[Job]:
    return [_job(s, section, b, workload=w) for w in s.workloads for b in s.backends]


def _scaling(s: Settings, section: str) -> list[Job]:
    return [_job(s, section, b, workers=n) for b in s.backends if b in SCALING_BACKENDS
            for n in worker_counts(s.max_workers)]


def _hw_decoder(s: Settings, section: str) -> list[Job]:
    return [_job(s, section, "dali-gpu", hw_decoder_load=load) for load in HW_DECODER_LOADS
            if "dali-gpu" in s.backends]


def _overlap(s: Settings, section: str) -> list[Job]:
    steps = OVERLAP_STEP_MS[:1] if s.quick else OVERLAP_STEP_MS
    return [_job(s, section, b, step_ms=ms) for ms in steps for b in (SYNTHETIC, *s.backends)]


def _e2e(s: Settings, section: str) -> list[Job]:
    loaders = [("train", b) for b in s.backends if b in E2E_BACKENDS]
    if "train-aug" in s.workloads:
        loaders += [("train-aug", b) for b in E2E_AUG_BACKENDS if b in s.backends]
    # More warm-up batches: cuDNN picks its kernels on the first steps.
    return [_job(s, section, b, workload=w, batch_size=E2E_BATCH_SIZE, warmup_batches=5, model=s.e2e_model)
            for w, b in (("train", SYNTHETIC), *loaders)] if loaders else []


def _e2e_sweep(s: Settings, section: str) -> list[Job]:
    """The e2e section's step (--e2e-model), against the e2e section's synthetic run when both are
    planned."""
    if "dali-gpu" not in s.backends:
        return []
    light = [] if "e2e" in s.sections else [SYNTHETIC]
    step: dict[str, Any] = {"batch_size": E2E_BATCH_SIZE, "warmup_batches": 5, "model": s.e2e_model}
    return [_job(s, section, b, **step) for b in light] + [
        _job(s, section, "dali-gpu", workers=t, hw_decoder_load=h, prefetch=p, **step)
        for t, h, p in sweep_points(s.max_workers)]


def _capped(s: Settings, section: str) -> list[Job]:
    if "dali-cpu" not in s.backends:
        return []
    return [_job(s, section, "dali-cpu", source=src)
            for src in (UNCAPPED, *(capped_source(side) for side in CAPPED_SIDES))]


def _device_graph(s: Settings, section: str, sources: tuple[str, ...] = ("files",), **spec: Any) -> list[Job]:
    """Jobs of this project's graph on the run's device, one per source."""
    backend = DALI_FOR_DEVICE[s.device]
    return [_job(s, section, backend, source=src, **spec) for src in sources] if backend in s.backends else []


def _soak(s: Settings, section: str) -> list[Job]:
    """Epoch 1 is the warm-up pass; every later epoch is a repeat."""
    return [dataclasses.replace(job, passes=True, repeats=s.soak_epochs) for job in _device_graph(s, section)]


def _shards(s: Settings, section: str) -> list[Job]:
    return _device_graph(s, section, ("files", "shards"))


def _storage(s: Settings, section: str) -> list[Job]:
    """From a local S3 server, beside local disk (the shards section's, if it runs)."""
    return _device_graph(s, section, storage.S3_SOURCES if "shards" in s.sections else storage.SOURCES)


def _tune(s: Settings, section: str) -> list[Job]:
    """From the library's defaults, measured as the tuner measures."""
    spec = measure_spec(s.quick)
    return [dataclasses.replace(job, warmup_s=spec.warmup_s, warmup_batches=spec.warmup_batches,
                                repeat_s=spec.repeat_s, repeats=spec.repeats,
                                repeat_images=spec.repeat_batches * job.spec.batch_size)
            for job in _device_graph(s, section, workers=default_num_threads(s.device))]


def _scale(s: Settings, section: str) -> list[Job]:
    """One job per tree size, the graph on the run's device reading each tree."""
    return [job for n in s.scale_files for job in _device_graph(s, section, scale_files=n)]


# Each section's planner: (settings, section name) -> its jobs.
PLANNERS: dict[str, Callable[[Settings, str], list[Job]]] = {
    "throughput": _throughput, "scaling": _scaling, "hw-decoder": _hw_decoder, "overlap": _overlap,
    "e2e": _e2e, "e2e-sweep": _e2e_sweep, "soak": _soak, "shards": _shards, "capped": _capped,
    "storage": _storage, "tune": _tune, "scale": _scale,
}


def plan_section(s: Settings, section: str) -> list[Job]:
    """The jobs of one section for these settings."""
    if section not in PLANNERS:
        raise ValueError(f"unknown section {section!r}; accepted: {', '.join(SECTIONS)}")
    return PLANNERS[section](s, section)


def plan(s: Settings) -> dict[str, list[Job]]:
    """Every selected section's jobs, in section order; sections without jobs left out."""
    sections = {name: plan_section(s, name) for name in SECTIONS if name in s.sections}
    return {name: jobs for name, jobs in sections.items() if jobs}


# ---------------------------------------------------------------- running one job (in the child)

def _record(job: Job, status: Status, reason: str = "", *, measurement: Measurement | None = None,
            consumer: StepFigures | None = None, trace: str | None = None,
            tune: TuneFigures | None = None, scale: ScaleFigures | None = None) -> Record:
    """The record of ``job``: its fields, the outcome, the figures, the machine's load now."""
    return Record(**job.to_dict(), status=status, reason=reason, measurement=measurement, consumer=consumer,
                  load_avg_1m=os.getloadavg()[0], traceback=trace, tune=tune, scale=scale)


def execute(job: Job, data: DataSource) -> Record:
    """Measure ``job`` in this process over ``data`` (already verified); its record."""
    if job.section == "tune":
        return _record(job, "ok", tune=run_tune_section(data, job.spec, job.measure_spec()))
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
    elif job.section in ("e2e", "e2e-sweep"):
        step = TimedTrainingStep(len(data.classes), job.model or "googlenet")
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
        conn.send(_record(job, "error", failure_reason(err), trace=traceback.format_exc()))
    finally:
        conn.close()


# ---------------------------------------------------------------- running the sweep (in the parent)

def _context() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def start_job_server() -> None:
    """Start the server that forks every job now, so its imports (seconds) overlap other work
    instead of delaying the first job."""
    _context()  # sets the preload list
    from multiprocessing import forkserver

    forkserver.ensure_running()


def run_job(job: Job, data: DataSource, timeout_s: float, limit: str = "--timeout") -> Record:
    """``job`` measured in a fresh process; an error record if it fails, dies or times out
    (``limit``: what set ``timeout_s``, for the reason)."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: daemonic processes may not start DataLoader workers of their own.
    proc = ctx.Process(target=_child, args=(job, data, child), name=f"bench-{job.section}-{job.backend}")
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            proc.kill()  # at once: waiting longer for a job past its limit helps nothing
            return _record(job, "error", f"timed out after {timeout_s:.0f} s ({limit})")
        return parent.recv()
    except EOFError:
        proc.join(timeout=10)
        return _record(job, "error", died_reason(proc.exitcode))
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
        elif record.tune is not None:
            t = record.tune
            outcome = (f"tuned {t.median('tuned'):.0f} img/s, grid best {t.median('grid best'):.0f}, "
                       f"defaults {t.median('defaults'):.0f} (medians of rounds in turn)")
        elif record.scale is not None:
            f = record.scale
            outcome = (f"scan {f.scan_s:.2f} s, verify {f.cold_verify_s:.1f} s cold "
                       f"(+{f.cold_verify_peak_mb:.0f} MiB) / {f.warm_verify_s:.2f} s warm, loader "
                       f"{f.loader_s:.2f} s (+{f.loader_peak_mb:.0f} MiB)")
            if f.s3_list_s is not None and f.s3_list_peak_mb is not None:
                outcome += f", bucket listing {f.s3_list_s:.2f} s (+{f.s3_list_peak_mb:.0f} MiB)"
        else:
            outcome = f"{record.status}: {record.reason}"
        width = len(str(self.total))
        print(f"[{self.done:>{width}}/{self.total} {minutes}:{seconds:02d}] {job.label()}: {outcome}",
              file=self.stream, flush=True)


def run_sweep(sections: dict[str, list[Job]], sources: Mapping[str, DataSource], timeout_s: float,
              save: Callable[[Record], None]) -> None:
    """Run every job in order; ``save`` gets each record as soon as it exists."""
    progress = Progress(sum(len(jobs) for jobs in sections.values()))
    for jobs in sections.values():
        for job in jobs:
            record = run_or_skip(job, sources, timeout_s)
            save(record)
            progress(job, record)


def run_or_skip(job: Job, sources: Mapping[str, DataSource], timeout_s: float,
                limit: str = "--timeout") -> Record:
    """``job``'s record: skipped, with the reason and no process, when its backend cannot do the
    workload; else measured by ``run_job``."""
    reason = job.skip_reason()
    if reason:
        return _record(job, "skipped", reason)
    return run_job(job, sources[job.source], job.timeout_s(timeout_s), limit)


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


def capped_source(max_side: int) -> str:
    """The ``source`` of a capped job reading images capped at ``max_side``."""
    return f"capped-{max_side}"


def capped_side(source: str) -> int | None:
    """The cap a capped job's ``source`` names; None for the uncapped shards."""
    return int(source.removeprefix("capped-")) if source.startswith("capped-") else None


def data_sources(files: ImageFolderData, shards: DataSource | None,
                 capped: Mapping[str, DataSource] | None = None) -> dict[str, DataSource]:
    """What a job's ``source`` names; ``capped``: the capped section's, by source name."""
    return {"files": files, **({"shards": shards} if shards is not None else {}), **(capped or {})}
