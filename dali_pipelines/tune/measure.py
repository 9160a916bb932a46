"""Steady-state images/s of a loader, optionally through a consumer (a training step): warm-up, then
timed repeats, each bounded below by time and by batches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

import torch

from dali_pipelines.tune.search import Score

Batch = tuple[torch.Tensor, torch.Tensor]
Consume = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class MeasureSpec:
    """How long one point is measured. Warm-up: the first batch (pipeline start, prefetch filling)
    and everything up to ``warmup_s`` / ``warmup_batches``, untimed. Then ``repeats`` timed repeats
    of at least ``repeat_s`` seconds and ``repeat_batches`` batches each; the score is their median."""

    warmup_s: float = 1.0
    warmup_batches: int = 2
    repeat_s: float = 1.0
    repeat_batches: int = 2
    repeats: int = 3

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.repeat_s < 0:
            raise ValueError(f"warmup_s and repeat_s must be >= 0, got {self.warmup_s}, {self.repeat_s}")
        if min(self.warmup_batches, self.repeat_batches, self.repeats) < 1:
            raise ValueError("warmup_batches, repeat_batches and repeats must be >= 1, got "
                             f"{self.warmup_batches}, {self.repeat_batches}, {self.repeats}")


def endless(loader: Iterable[Batch]) -> Generator[Batch, None, None]:
    """Batches across epoch ends (each ``for`` over a DaliLoader is a fresh epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader under measurement yielded no batch in a whole epoch")


def measure_images_per_s(batches: Iterator[Batch], spec: MeasureSpec, *, consume: Consume | None = None,
                         sync: Callable[[], None] = lambda: None) -> Score:
    """Median images/s over ``spec``'s repeats of ``batches`` (each passed to ``consume``, if any).

    ``sync`` waits for queued device work; it runs at both ends of each repeat, so a repeat's time
    covers the device work its batches caused. The detail records the warm-up, each repeat's
    rate and the share of timed wall time spent waiting for the next batch.
    """
    began = time.perf_counter()
    _run(batches, consume, seconds=spec.warmup_s, min_batches=spec.warmup_batches)
    sync()
    warmup_s = time.perf_counter() - began
    rates, waits, walls = [], [], []
    for _ in range(spec.repeats):
        images, wait, wall = _run(batches, consume, seconds=spec.repeat_s, min_batches=spec.repeat_batches,
                                  sync=sync)
        rates.append(images / wall)
        waits.append(wait)
        walls.append(wall)
    return Score(value=statistics.median(rates), low=min(rates), high=max(rates),
                 detail={"warmup_s": round(warmup_s, 3), "repeat_images_per_s": [round(r, 2) for r in rates],
                         "data_wait_frac": round(sum(waits) / sum(walls), 4)})


def _run(batches: Iterator[Batch], consume: Consume | None, *, seconds: float, min_batches: int,
         sync: Callable[[], None] = lambda: None) -> tuple[int, float, float]:
    """(images, seconds waiting for batches, wall seconds) of one stretch of batches."""
    sync()
    start = mark = time.perf_counter()
    images, count, wait = 0, 0, 0.0
    while count < min_batches or mark - start < seconds:
        images_batch, labels = next(batches)
        now = time.perf_counter()
        wait += now - mark
        if consume is not None:
            consume(images_batch, labels)
        images += images_batch.shape[0]
        count += 1
        mark = time.perf_counter()
    sync()
    return images, wait, time.perf_counter() - start
