"""Steady-state throughput of any batch iterable: images/s, CPU cost, peak memory.

Reusable outside the backends (e.g. "shards vs loose files")::

    from bench.runner import measure_throughput
    m = measure_throughput(lambda: make_loader(data, cfg, train=True),
                           warmup_batches=5, repeats=3, batches_per_repeat=None)
    print(m.images_per_s, m.images_per_s_min, m.images_per_s_max, m.cpu_s_per_1000)
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bench.monitor import PeakMonitor, cpu_seconds

_logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
MakeIterable = Callable[[], Iterable[Batch]]
Step = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Measurement:
    """One steady-state measurement; rates are over the timed repeats only (warm-up excluded)."""

    images_per_s: float  # median over repeats
    images_per_s_min: float
    images_per_s_max: float
    repeats: tuple[float, ...]  # images/s of each repeat
    images: int  # images in the timed repeats
    batches: int
    wall_s: float  # timed wall time, all repeats
    cpu_s_per_1000: float  # CPU seconds (process + children) per 1000 timed images
    peak_pss_mb: float  # PSS of process + live children, over warm-up and repeats
    peak_gpu_mb: float | None  # device memory above the level before make_iterable; None: CPU
    data_wait_frac: float  # share of timed wall time spent waiting for the next batch
    startup_s: float  # make_iterable(), the warm-up batches, and (full passes) the untimed rest of that pass
    memory_metric: str = "pss"  # "rss" where the OS has no PSS (then peak_pss_mb holds RSS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["repeats"] = list(self.repeats)
        return out


class _BatchStream:
    """Endless batches from an iterable: a finished pass starts the next one (epoch boundary)."""

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

    def new_pass(self) -> None:
        """Drop the rest of the current pass (untimed) so the next batch starts a fresh one."""
        for _ in self._it:
            pass
        self._it = iter(self.iterable)

    def endless(self) -> Iterator[Batch]:
        """Batches across pass boundaries, for as long as the caller pulls."""
        while True:
            yield self.next()

    def pass_batches(self) -> Iterator[Batch]:
        """The rest of the current pass, then a fresh iterator for the next."""
        yield from self._it
        self._it = iter(self.iterable)


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


def _timed_repeat(stream: _BatchStream, batches: int | None, step: Step | None,
                  gpu: bool = False) -> tuple[int, int, float, float]:
    """(images, batches, wall seconds, seconds waiting for data) of one repeat."""
    source = stream.pass_batches() if batches is None else itertools.islice(stream.endless(), batches)
    images = count = 0
    wait = 0.0
    last: torch.Tensor | None = None
    _sync(gpu)
    start = t0 = time.perf_counter()
    for imgs, labels in source:
        wait += time.perf_counter() - t0
        if step is not None:
            step(imgs, labels)
        images += int(imgs.shape[0])
        count += 1
        last = imgs
        t0 = time.perf_counter()
    _sync(gpu, last)
    return images, count, time.perf_counter() - start, wait


def measure_throughput(make_iterable: MakeIterable, *, warmup_batches: int = 5, repeats: int = 3,
                       batches_per_repeat: int | None = None, step: Step | None = None,
                       gpu: bool = False, after_warmup: Callable[[], None] | None = None) -> Measurement:
    """Measure images/s of ``make_iterable()``'s batches after ``warmup_batches`` untimed ones.

    ``batches_per_repeat=None`` makes each repeat one full fresh pass (an epoch; the warm-up
    pass is finished untimed first); an int streams across pass boundaries. ``step`` runs on
    every batch inside the timed region (a training step, or a simulated accelerator).
    ``gpu=True`` also records device memory and synchronizes the GPU at both ends of each
    repeat; ``after_warmup`` is called once, right before the first timed repeat (e.g. to
    reset a step's own counters).
    """
    if warmup_batches < 0 or repeats < 1 or (batches_per_repeat is not None and batches_per_repeat < 1):
        raise ValueError(
            f"need warmup_batches >= 0, repeats >= 1, batches_per_repeat >= 1 or None; got "
            f"{warmup_batches}, {repeats}, {batches_per_repeat}"
        )
    with PeakMonitor(gpu=gpu) as monitor:
        t_start = time.perf_counter()
        stream = _BatchStream(make_iterable())
        for _ in range(warmup_batches):
            imgs, labels = stream.next()
            if step is not None:
                step(imgs, labels)
        if batches_per_repeat is None:
            stream.new_pass()
        startup = time.perf_counter() - t_start
        if after_warmup is not None:
            after_warmup()
        cpu0 = cpu_seconds()
        results = [_timed_repeat(stream, batches_per_repeat, step, gpu) for _ in range(repeats)]
        cpu = cpu_seconds() - cpu0
    return _summarize(results, cpu, monitor, startup)


def _summarize(results: list[tuple[int, int, float, float]], cpu: float, monitor: PeakMonitor,
               startup: float) -> Measurement:
    rates = [n / wall for n, _, wall, _ in results]
    images = sum(n for n, _, _, _ in results)
    wall = sum(w for _, _, w, _ in results)
    measurement = Measurement(
        images_per_s=statistics.median(rates),
        images_per_s_min=min(rates),
        images_per_s_max=max(rates),
        repeats=tuple(rates),
        images=images,
        batches=sum(b for _, b, _, _ in results),
        wall_s=wall,
        cpu_s_per_1000=1000.0 * cpu / images,
        peak_pss_mb=monitor.peak_pss_mb,
        peak_gpu_mb=monitor.peak_gpu_mb,
        data_wait_frac=sum(w for _, _, _, w in results) / wall,
        startup_s=startup,
        memory_metric=monitor.memory_metric,
    )
    _logger.debug("measured %.1f img/s (%.1f-%.1f)", measurement.images_per_s,
                  measurement.images_per_s_min, measurement.images_per_s_max)
    return measurement
