"""What consumes each batch in the overlap and end-to-end modes, and synthetic data.

``SleepStep`` stands in for an accelerator on a CPU-only machine: it takes a fixed time per
batch and no CPU, so a loader that prefetches keeps working while it "computes".
``GoogLeNetStep`` is a real AMP training step; it times itself on the GPU with CUDA events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from bench.runner import Batch
from bench.workloads import CROP
from train.model import build_googlenet, googlenet_loss
from train.timing import busy_and_gaps_ms


class SleepStep:
    """A simulated accelerator step: ``ms`` milliseconds per batch, no CPU used."""

    def __init__(self, ms: float) -> None:
        self.seconds = ms / 1000.0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        time.sleep(self.seconds)


class GoogLeNetStep:
    """One GoogLeNet training step (fp16 AMP, SGD) per batch; records its span on the GPU timeline.

    GradScaler's finite check reads a flag back to the host every step (a host<->device
    sync), so time spent waiting in the loader is time the GPU has nothing queued.
    """

    def __init__(self, num_classes: int, device: str = "cuda") -> None:
        self.device = torch.device(device)
        self.model = build_googlenet(num_classes).to(self.device).to(memory_format=torch.channels_last)
        self.model.train()
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.scaler = torch.amp.GradScaler("cuda")
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss, _ = googlenet_loss(self.model(images), labels, self.criterion)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        end.record()
        self._events.append((start, end))

    def reset(self) -> None:
        """Forget steps so far (the warm-up)."""
        self._events.clear()

    def gpu_idle_fraction(self) -> float | None:
        """GPU idle share of the steps since ``reset`` (see ``idle_fraction``); synchronizes."""
        if self._events:
            torch.cuda.synchronize(self.device)
        return idle_fraction(self._events)


def idle_fraction(spans: list[tuple[Any, Any]]) -> float | None:
    """Gaps between steps / (step spans + gaps), from (start, end) CUDA events in step order.

    A gap is the GPU-timeline time from one step's end event to the next step's start
    event: time the GPU had no step queued, as ``train.timing`` measures it. None with
    fewer than two steps (no gap to measure).
    """
    if len(spans) < 2:
        return None
    busy, gaps = busy_and_gaps_ms(spans)
    return gaps / (busy + gaps) if busy + gaps > 0 else None


class SyntheticBatches:
    """The "speed of light" input: one pre-made batch handed out ``batches`` times per pass.

    Already on ``device`` and already in the workload's shape, so a step fed by it never
    waits for data.
    """

    def __init__(self, batch_size: int, num_classes: int, device: str, batches: int = 1000) -> None:
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch_size, 3, CROP, CROP, generator=generator)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        self.batch = (images.to(device), labels.to(device))
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.batches):
            yield self.batch
