"""What the backends share: delivering host batches to the batch device (the GPU when asked)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from bench.runner import Batch


class ToDevice:
    """Re-iterable wrapper that moves host batches to ``device`` (no-op for "cpu").

    The copy is part of the declared work when the comparison is "to the GPU"; from pinned
    memory it is asynchronous (``non_blocking``) and the runner's final sync accounts for it.
    """

    def __init__(self, batches: Iterable[Batch], device: str) -> None:
        self.batches = batches
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        if self.device.type == "cpu":
            yield from self.batches
            return
        for images, labels in self.batches:
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))
