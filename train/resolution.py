"""Training resolution per epoch: one size (--train-size, FixRes when it is below --eval-size) or
progressive resizing as FFCV does it (--progressive-resize START:END[:FROM:TO]); and the train
loader that follows it, its DALI graph rebuilt only when the size changes.

FFCV's rule (``ffcv-imagenet/train_imagenet.py``, ``get_resolution``): START through epoch FROM,
END from epoch TO on, linear in between rounded to the nearest multiple of 32 (halves to even).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

from dali_pipelines import DaliLoader

_logger = logging.getLogger(__name__)

SIZE_STEP = 32  # sizes of the schedule are multiples of this (FFCV rounds to it; strides divide it)
MIN_SIZE = 32


@dataclass(frozen=True)
class ResizeSchedule:
    """START until epoch FROM, END from epoch TO, linear steps of 32 px in between (0-based epochs)."""

    start: int
    end: int
    from_epoch: int | None = None  # None: 0
    to_epoch: int | None = None  # None: the last epoch

    @classmethod
    def parse(cls, text: str) -> ResizeSchedule:
        """``START:END`` or ``START:END:FROM:TO``; sizes multiples of 32, START < END, FROM <= TO."""
        parts = text.split(":")
        if len(parts) not in (2, 4) or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected START:END or START:END:FROM_EPOCH:TO_EPOCH (integers), got {text!r}")
        numbers = [int(p) for p in parts]
        start, end = numbers[:2]
        if start % SIZE_STEP or end % SIZE_STEP or start < MIN_SIZE:
            raise ValueError(f"sizes must be multiples of {SIZE_STEP} from {MIN_SIZE} on, got {start}:{end}")
        if start >= end:
            raise ValueError(f"START must be below END (a fixed size is --train-size), got {start}:{end}")
        if len(numbers) == 2:
            return cls(start, end)
        from_epoch, to_epoch = numbers[2:]
        if from_epoch > to_epoch:
            raise ValueError(f"FROM_EPOCH must not be after TO_EPOCH, got {from_epoch}:{to_epoch}")
        return cls(start, end, from_epoch, to_epoch)

    def ramp(self, epochs: int) -> tuple[int, int]:
        """(FROM, TO) for a run of ``epochs`` epochs."""
        return (0 if self.from_epoch is None else self.from_epoch,
                epochs - 1 if self.to_epoch is None else self.to_epoch)

    def size_at(self, epoch: int, epochs: int) -> int:
        """The training size of 0-based ``epoch`` of ``epochs``."""
        low, high = self.ramp(epochs)
        if epoch <= low:
            return self.start
        if epoch >= high:
            return self.end
        interpolated = self.start + (self.end - self.start) * (epoch - low) / (high - low)
        return round(interpolated / SIZE_STEP) * SIZE_STEP  # round() takes halves to even, as np.round


def schedule_text(text: str) -> str:
    """argparse type of --progressive-resize: the text, once it parses."""
    try:
        ResizeSchedule.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


class SizedTrainLoader:
    """The train loader at the size of the current epoch: built at the first epoch's size, and
    built again from the old loader's position (``state()``) when an epoch needs another size, so
    the new graph continues the same sample order and random streams. A resumed run builds it at
    its epoch's size from the checkpoint's position: the same graph from the same state."""

    def __init__(self, build: Callable[[int, str | None], DaliLoader], size_at: Callable[[int], int],
                 epoch: int, checkpoint: str | None) -> None:
        self._build, self._size_at = build, size_at
        self.size = size_at(epoch)
        self.loader = build(self.size, checkpoint)

    def for_epoch(self, epoch: int) -> DaliLoader:
        """The loader for ``epoch``; a new graph only when its size differs from the current one."""
        size = self._size_at(epoch)
        if size != self.size:
            position = self.loader.state()
            _logger.info("epoch %d: training size %d -> %d px (DALI train graph rebuilt)",
                         epoch, self.size, size)
            self.loader.close()  # before the new graph: its memory pools are not held twice
            self.loader = self._build(size, position)
            self.size = size
        return self.loader

    def close(self) -> None:
        self.loader.close()
