"""``naive``: a sequential PIL generator, no workers and no prefetch (the classic naive loader).

Every image is opened, decoded and transformed in the consumer's thread, so the step
that consumes a batch and the work that makes the next one never overlap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator

import torch

from bench.backends import RunSpec
from bench.backends.common import ToDevice, load_pil, pil_transform
from bench.measure import Batch
from dali_pipelines import ImageFolderData


class NaiveBatches:
    """One pass over the files per ``iter()``; shuffled each pass for the train workload."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        self.samples = data.samples
        self.spec = spec
        self.transform = pil_transform(spec.workload)
        self._rng = random.Random(spec.seed)

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.spec.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        samples = list(self.samples)
        if self.spec.train:
            self._rng.shuffle(samples)
        size = self.spec.batch_size
        for begin in range(0, len(samples), size):
            chunk = samples[begin:begin + size]
            images = torch.stack([self.transform(load_pil(path)) for path, _ in chunk])
            yield images, torch.tensor([label for _, label in chunk], dtype=torch.int64)


def make_batches(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """Batches of ``spec.workload`` from ``data``; ``spec.workers`` is ignored (sequential).

    Sets torch to one intra-op thread, as DataLoader does in its workers: per-image tensor
    ops (ToTensor, Normalize) are far slower multi-threaded on small machines (10x on the
    2-core reference VM), and the baseline should run at its best.
    """
    torch.set_num_threads(1)
    return ToDevice(NaiveBatches(data, spec), spec)
