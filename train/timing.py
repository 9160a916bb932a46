"""Where each step's time goes: waiting for data vs computing, and GPU idle time.

Data wait is host time blocked in ``next(loader)``. Compute is the host time of the step: on
the GPU that is the time to enqueue its kernels (the host runs ahead), not their run time. GPU
idle comes from CUDA events: the gap on the GPU timeline between the end of one step's work and
the start of the next. It needs no per-step synchronization; the events are read (one sync)
when the epoch's timing is taken: at its end, and in checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def busy_and_gaps_ms(spans: Sequence[tuple[Any, Any]], previous_end: Any = None) -> tuple[float, float]:
    """(time inside steps, time between steps) in ms on the GPU timeline, from (start, end)
    CUDA events in step order; ``previous_end`` links to a step recorded earlier. The events
    must have completed (synchronize on the last one first)."""
    busy = sum(start.elapsed_time(end) for start, end in spans)
    ends = [previous_end, *(end for _, end in spans[:-1])]
    gaps = sum(end.elapsed_time(start) for end, (start, _) in zip(ends, spans, strict=True)
               if end is not None)
    return busy, gaps


@dataclass(frozen=True)
class EpochTiming:
    """Throughput and stall figures for one epoch on this rank."""

    images: int
    seconds: float
    data_wait_seconds: float
    compute_seconds: float
    gpu_idle_fraction: float | None  # None on the CPU

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_seconds / self.seconds if self.seconds > 0 else 0.0


class StepTimer:
    """Accumulates per-step timings; call in the order data_ready, compute_begin, compute_end."""

    def __init__(self, use_cuda: bool) -> None:
        self.use_cuda = use_cuda
        self.start_epoch()

    def start_epoch(self) -> None:
        """Zero the counters; the clock starts now (loader start-up counts as data wait)."""
        self._epoch_start = self._mark = time.perf_counter()
        self.images = 0
        self.data_wait = 0.0
        self.compute = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._start: torch.cuda.Event | None = None
        self._gpu_busy_ms = 0.0
        self._gpu_gap_ms = 0.0
        self._last_end: torch.cuda.Event | None = None
        self._interval_from = (0, 0.0, 0.0)

    def state(self) -> dict[str, float]:
        """Totals through the last step, to carry a partial epoch across a resume (one device sync)."""
        self.drain()
        return {"images": float(self.images), "seconds": self._mark - self._epoch_start,
                "data_wait": self.data_wait, "compute": self.compute,
                "gpu_busy_ms": self._gpu_busy_ms, "gpu_gap_ms": self._gpu_gap_ms}

    def restore(self, state: dict[str, float]) -> None:
        """Continue from totals ``state()`` returned; the clock goes on from now."""
        self.images = int(state["images"])
        self._epoch_start = self._mark - state["seconds"]
        self.data_wait = state["data_wait"]
        self.compute = state["compute"]
        self._gpu_busy_ms = state["gpu_busy_ms"]
        self._gpu_gap_ms = state["gpu_gap_ms"]
        self._interval_from = (self.images, self.data_wait, self.compute)  # intervals start after it

    def interval(self) -> tuple[int, float, float]:
        """(images, data wait s, compute s) since the previous call, or the epoch's start or resume:
        the span of one steps.csv row. Wall time of the span is their sum (one chain of marks)."""
        images, data_wait, compute = self._interval_from
        self._interval_from = (self.images, self.data_wait, self.compute)
        return self.images - images, self.data_wait - data_wait, self.compute - compute

    def data_ready(self) -> float:
        """Host seconds spent waiting for the batch that just arrived."""
        now = time.perf_counter()
        wait, self._mark = now - self._mark, now
        self.data_wait += wait
        return wait

    def compute_begin(self) -> None:
        if self.use_cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()

    def compute_end(self, batch_images: int) -> float:
        """Host seconds of the step (on the GPU: time to enqueue, unless the step synced)."""
        if self.use_cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._start, end))
        now = time.perf_counter()
        spent, self._mark = now - self._mark, now
        self.compute += spent
        self.images += batch_images
        return spent

    def drain(self) -> None:
        """Fold recorded CUDA events into busy/gap totals (one device synchronization)."""
        if not self._events:
            return
        self._events[-1][1].synchronize()
        busy, gaps = busy_and_gaps_ms(self._events, previous_end=self._last_end)
        self._gpu_busy_ms += busy
        self._gpu_gap_ms += gaps
        self._last_end = self._events[-1][1]
        self._events.clear()

    def epoch_timing(self) -> EpochTiming:
        """Summary of the epoch so far."""
        self.drain()
        idle = None
        if self.use_cuda and self._gpu_busy_ms + self._gpu_gap_ms > 0:
            idle = self._gpu_gap_ms / (self._gpu_busy_ms + self._gpu_gap_ms)
        return EpochTiming(images=self.images, seconds=time.perf_counter() - self._epoch_start,
                           data_wait_seconds=self.data_wait, compute_seconds=self.compute,
                           gpu_idle_fraction=idle)
