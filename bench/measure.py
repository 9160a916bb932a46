"""Steady-state throughput of any batch iterable, by time: images/s, CPU cost, memory, waits.

Reusable outside the backends::

    from bench.measure import measure
    m = measure(lambda: make_loader(data, cfg, train=True), warmup_s=1.0, repeat_s=2.0)
    print(m.images_per_s, m.images_per_s_min, m.images_per_s_max, m.cpu_s_per_1000)

Warm-up and repeats are bounded below by time (and by images), not by a batch count, so a
fast GPU loader and a slow sequential one are both timed over seconds.
Also here: what consumes the batches (``SleepStep``, a simulated accelerator;
``TimedTrainingStep``, a real training step) and ``SyntheticBatches``, the "speed of light" input.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psutil
import torch

_logger = logging.getLogger(__name__)
_MIB = 1024 * 1024

Batch = tuple[torch.Tensor, torch.Tensor]
MakeIterable = Callable[[], Iterable[Batch]]
Step = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Measurement:
    """One steady-state measurement; rates are over the timed repeats only (warm-up excluded)."""

    images_per_s: float  # median over repeats
    images_per_s_min: float
    images_per_s_max: float
    repeat_images: tuple[int, ...]  # images in each repeat
    repeat_s: tuple[float, ...]  # wall seconds of each repeat (GPU work included)
    repeat_pss_mb: tuple[float, ...]  # memory (process + workers) after each repeat
    repeat_gpu_mb: tuple[float, ...] | None  # device memory above the start level after each repeat
    cpu_s_per_1000: float  # CPU seconds (process + workers) per 1000 timed images
    peak_pss_mb: float  # PSS of process + live workers, warm-up and repeats
    peak_gpu_mb: float | None  # device memory above the level before make_iterable; None: CPU
    data_wait_frac: float  # share of timed wall time spent waiting for the next batch
    startup_s: float  # make_iterable() and the first batch
    warmup_s: float  # all untimed batches, first one included
    warmup_images: int
    memory_metric: str = "pss"  # "rss" where the OS has no PSS (then the *_pss_mb fields hold RSS)

    @property
    def images(self) -> int:
        """Images in the timed repeats."""
        return sum(self.repeat_images)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """The measurement ``to_dict`` wrote (lists become tuples)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)


@dataclass(frozen=True)
class StepFigures:
    """GPU figures of a training step's timed repeats; None where there was no gap to measure."""

    gpu_idle_frac: float | None  # share of GPU time between steps: the loader was late
    gpu_step_ms: float | None  # mean GPU time inside a step


def measure(make_iterable: MakeIterable, *, warmup_s: float = 1.0, warmup_batches: int = 1,
            repeat_s: float = 2.0, repeat_images: int = 0, repeats: int = 3, passes: bool = False,
            step: Step | None = None, gpu: bool = False) -> Measurement:
    """Images/s of ``make_iterable()``'s batches over ``repeats`` timed repeats after a warm-up.

    Warm-up: at least ``warmup_s`` seconds and ``warmup_batches`` batches. Each repeat: at
    least ``repeat_s`` seconds and ``repeat_images`` images (whole batches, streaming across
    epoch ends); with ``passes=True`` each repeat is one full fresh pass (an epoch) instead,
    and the warm-up finishes its pass untimed. ``step`` consumes every batch inside the timed
    region (a training step, a simulated accelerator); its ``reset()``, if any, runs before
    every repeat (so it can leave the warm-up out). ``gpu=True`` records device memory and
    synchronizes the GPU at both ends of each repeat.
    """
    if warmup_s < 0 or warmup_batches < 1 or repeat_s < 0 or repeat_images < 0 or repeats < 1:
        raise ValueError(f"need warmup_s, repeat_s, repeat_images >= 0 and warmup_batches, repeats >= 1; "
                         f"got {warmup_s}, {repeat_s}, {repeat_images}, {warmup_batches}, {repeats}")
    with PeakMonitor(gpu=gpu) as monitor:
        stream = _BatchStream(make_iterable())
        startup, warmup, warm_images = _warm_up(stream, seconds=warmup_s, batches=warmup_batches,
                                                passes=passes, step=step)
        cpu_start = cpu_seconds()
        results = []
        for _ in range(repeats):
            if hasattr(step, "reset"):
                step.reset()  # type: ignore[union-attr]
            results.append(_timed_repeat(stream, seconds=repeat_s, min_images=repeat_images, passes=passes,
                                         step=step, gpu=gpu))
            results[-1]["pss_mb"] = pss_bytes()[0] / _MIB
            results[-1]["gpu_mb"] = monitor.gpu_above_start_mb()
        cpu = cpu_seconds() - cpu_start
    return _summarize(results, cpu, monitor, startup=startup, warmup=warmup, warm_images=warm_images)


class _BatchStream:
    """Endless batches from a re-iterable: a finished pass starts the next one (epoch boundary)."""

    def __init__(self, iterable: Iterable[Batch]) -> None:
        self.iterable = iterable
        self._it: Iterator[Batch] = iter(iterable)

    def next(self) -> Batch:
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.iterable)
        try:
            return next(self._it)
        except StopIteration:
            raise ValueError("the iterable under measurement yielded no batches in a fresh pass") from None

    def finish_pass(self) -> None:
        """Drop the rest of the current pass (untimed) so the next batch starts a fresh one."""
        for _ in self._it:
            pass
        self._it = iter(self.iterable)

    def one_pass(self) -> Iterator[Batch]:
        """The rest of the current pass; afterwards the stream stands at a fresh pass."""
        yield from self._it
        self._it = iter(self.iterable)


def _warm_up(stream: _BatchStream, *, seconds: float, batches: int, passes: bool,
             step: Step | None) -> tuple[float, float, int]:
    """(start-up s, warm-up s, warm-up images): untimed batches until both minimums are met."""
    start = time.perf_counter()
    startup = count = images = 0
    while count < batches or time.perf_counter() - start < seconds:
        imgs, labels = stream.next()
        if step is not None:
            step(imgs, labels)
        count += 1
        images += int(imgs.shape[0])
        startup = startup or time.perf_counter() - start
    if passes:
        stream.finish_pass()
    return startup, time.perf_counter() - start, images


def _sync(gpu: bool, last: torch.Tensor | None = None) -> None:
    """Wait for queued GPU work when the measurement involves the GPU (no-op on CPU runs).

    GPU backends and steps return before their kernels finish: without a sync at both ends
    of a timed repeat, work queued before the clock starts would be billed to it and work
    still queued when it stops would be left out, misstating GPU throughput.
    """
    if last is not None and last.is_cuda:
        torch.cuda.synchronize(last.device)
    if (gpu or torch.cuda.is_initialized()) and torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed_repeat(stream: _BatchStream, *, seconds: float, min_images: int, passes: bool,
                  step: Step | None, gpu: bool) -> dict[str, Any]:
    """One repeat: {"images", "seconds", "wait_s"}; at least ``seconds`` and ``min_images``."""
    images = 0
    wait = 0.0
    last: torch.Tensor | None = None
    source = stream.one_pass() if passes else iter(stream.next, None)
    _sync(gpu)
    start = t0 = time.perf_counter()
    for imgs, labels in source:
        wait += time.perf_counter() - t0
        if step is not None:
            step(imgs, labels)
        images += int(imgs.shape[0])
        last = imgs
        if not passes and images >= min_images and time.perf_counter() - start >= seconds:
            break
        t0 = time.perf_counter()
    _sync(gpu, last)
    return {"images": images, "seconds": time.perf_counter() - start, "wait_s": wait}


def _summarize(results: list[dict[str, Any]], cpu: float, monitor: PeakMonitor, *, startup: float,
               warmup: float, warm_images: int) -> Measurement:
    rates = [r["images"] / r["seconds"] for r in results]
    images = sum(r["images"] for r in results)
    wall = sum(r["seconds"] for r in results)
    gpu_mb = tuple(r["gpu_mb"] for r in results) if monitor.gpu else None
    measurement = Measurement(
        images_per_s=statistics.median(rates),
        images_per_s_min=min(rates),
        images_per_s_max=max(rates),
        repeat_images=tuple(r["images"] for r in results),
        repeat_s=tuple(r["seconds"] for r in results),
        repeat_pss_mb=tuple(r["pss_mb"] for r in results),
        repeat_gpu_mb=gpu_mb,
        cpu_s_per_1000=1000.0 * cpu / images,
        peak_pss_mb=monitor.peak_pss / _MIB,
        peak_gpu_mb=None if monitor.peak_gpu is None else monitor.peak_gpu / _MIB,
        data_wait_frac=sum(r["wait_s"] for r in results) / wall,
        startup_s=startup,
        warmup_s=warmup,
        warmup_images=warm_images,
        memory_metric=monitor.memory_metric,
    )
    _logger.debug("measured %.1f img/s (%.1f-%.1f)", measurement.images_per_s,
                  measurement.images_per_s_min, measurement.images_per_s_max)
    return measurement


# ---------------------------------------------------------------- resource accounting

def _live_children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def cpu_seconds(proc: psutil.Process | None = None) -> float:
    """User + system CPU seconds of this process, its reaped children and its live children.

    DataLoader workers are live children: ``children_user`` only counts children already
    waited for, so live ones are summed one by one (never both: a child moves from the
    live sum to ``children_*`` when reaped).
    """
    proc = proc or psutil.Process()
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in _live_children(proc):
        try:
            ctimes = child.cpu_times()
        except psutil.Error:  # exited between listing and reading
            continue
        total += ctimes.user + ctimes.system
    return total


def _pss_or_rss(proc: psutil.Process) -> tuple[int, bool]:
    """(bytes, is_pss) of one process: PSS where the OS reports it, else RSS."""
    try:
        return proc.memory_full_info().pss, True
    except (AttributeError, psutil.AccessDenied):  # no ``pss`` field off Linux, or smaps unreadable
        return proc.memory_info().rss, False


def pss_bytes(proc: psutil.Process | None = None) -> tuple[int, bool]:
    """(proportional set size of this process plus live children, True if every reading was PSS).

    PSS splits each shared page among the processes mapping it, so forked DataLoader
    workers' copy-on-write pages are counted once, not once per worker as RSS would.
    Falls back to RSS (second item False) where PSS is unavailable.
    """
    proc = proc or psutil.Process()
    total, all_pss = _pss_or_rss(proc)
    for child in _live_children(proc):
        try:
            size, is_pss = _pss_or_rss(child)
        except psutil.Error:  # exited between listing and reading
            continue
        total += size
        all_pss = all_pss and is_pss
    return total, all_pss


def gpu_used_bytes() -> int | None:
    """Device-wide used GPU memory (all allocators: torch, DALI, nvJPEG); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total - free


class PeakMonitor:
    """Samples PSS (RSS where PSS is unavailable) and GPU memory in a thread while the ``with`` block runs.

    Reading PSS makes the kernel walk the page tables of each process read, CPU time charged to this
    process: the period keeps that cost small. A peak shorter than the period can be missed,
    so the final reading is taken on exit as well.
    """

    def __init__(self, period_s: float = 0.25, *, gpu: bool = False) -> None:
        self.period_s = period_s
        self.gpu = gpu and torch.cuda.is_available()
        self.peak_pss = 0
        self.pss_exact = True  # False once any sample fell back to RSS
        self.peak_gpu: int | None = None
        self._gpu_start = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-peak-monitor", daemon=True)

    def _sample(self) -> None:
        size, is_pss = pss_bytes()
        self.peak_pss = max(self.peak_pss, size)
        if not is_pss and self.pss_exact:
            self.pss_exact = False
            _logger.warning("PSS unavailable on this system; peak memory falls back to RSS, "
                            "which counts pages shared with forked workers once per worker")
        if self.gpu:
            self.peak_gpu = max(self.peak_gpu or 0, (gpu_used_bytes() or 0) - self._gpu_start)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def gpu_above_start_mb(self) -> float | None:
        """Device memory in use now above the level at the start, MiB; None without a GPU."""
        return ((gpu_used_bytes() or 0) - self._gpu_start) / _MIB if self.gpu else None

    def __enter__(self) -> PeakMonitor:
        if self.gpu:
            self._gpu_start = gpu_used_bytes() or 0
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def memory_metric(self) -> str:
        """``"pss"``, or ``"rss"`` where PSS was unavailable for any sample."""
        return "pss" if self.pss_exact else "rss"


# ---------------------------------------------------------------- consumers and synthetic data

class SleepStep:
    """A simulated accelerator step: ``ms`` milliseconds per batch, no CPU used.

    Stands in for a GPU on a CPU-only machine: a loader that prefetches keeps working while
    it "computes", a sequential one does not.
    """

    def __init__(self, ms: float) -> None:
        self.seconds = ms / 1000.0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        time.sleep(self.seconds)


class TimedTrainingStep:
    """One training step per batch of a torchvision classifier (bf16 autocast, channels_last, SGD),
    timed on the GPU: GoogLeNet (the default, with its auxiliary heads and their loss, as
    ``python -m train``) or any other builder name, e.g. resnet50.

    CUDA events around every step give, once the repeats are over, the GPU time inside steps
    and the gaps between them (within a repeat: the bookkeeping between repeats is not the
    loader's). Gaps are time the GPU had no step queued (the loader was late); a longer step
    than on synthetic data is time the step lost to the loader's own GPU work running beside
    it (shared SMs and memory bandwidth), which gaps do not show. No host sync per step (no
    GradScaler with bf16), so the host runs ahead when it can.
    """

    def __init__(self, num_classes: int, model: str = "googlenet") -> None:
        from train.models import build, model_loss  # torchvision models: only here

        self.loss_fn = model_loss
        self.device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        self.model = build(model, num_classes).to(self.device).to(memory_format=torch.channels_last)
        self.model.train()
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self._repeats: list[list[tuple[torch.cuda.Event, torch.cuda.Event]]] = []  # timed steps' events
        self._current: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # warm-up until a reset

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = self.loss_fn(self.model(images), labels, self.criterion).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        end.record()
        self._current.append((start, end))

    def reset(self) -> None:
        """Start a new repeat; the steps before the first one (the warm-up) are not kept."""
        self._current = []
        self._repeats.append(self._current)

    def summary(self) -> StepFigures:
        """GPU figures of the timed steps: idle share (gaps) and mean GPU time per step (ms)."""
        from train.timing import busy_and_gaps_ms

        spans = [s for s in self._repeats if s]
        steps = sum(len(s) for s in spans)
        if steps - len(spans) < 1:  # no gap to measure
            return StepFigures(gpu_idle_frac=None, gpu_step_ms=None)
        spans[-1][-1][1].synchronize()
        busy = gaps = 0.0
        for repeat in spans:
            repeat_busy, repeat_gaps = busy_and_gaps_ms(repeat)
            busy, gaps = busy + repeat_busy, gaps + repeat_gaps
        return StepFigures(gpu_idle_frac=gaps / (busy + gaps), gpu_step_ms=busy / steps)


class SyntheticBatches:
    """The "speed of light" input: one pre-made batch handed out ``batches`` times per pass.

    Already on ``device`` and in the workloads' shape, so a step fed by it never waits for data.
    """

    def __init__(self, batch_size: int, num_classes: int, device: torch.device, side: int = 224,
                 batches: int = 1000) -> None:
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch_size, 3, side, side, generator=generator)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        self.batch = (images.to(device), labels.to(device))
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.batches):
            yield self.batch
