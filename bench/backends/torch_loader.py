"""``torch-pil`` and ``torch-tv``: ``Dataset`` + ``DataLoader(num_workers, pin_memory)``.

``torch-pil`` decodes with PIL and classic transforms (torchvision's ImageFolder recipe);
``torch-tv`` decodes with ``torchvision.io.decode_jpeg`` and transforms uint8 tensors with
``transforms.v2``. Workers are processes: each image is transformed in a worker and the
batch is sent back through shared memory (a copy per batch, counted in the figures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode

from bench.backends import RunSpec
from bench.backends.common import ToDevice, load_pil, pil_transform, tensor_transform
from bench.measure import Batch
from dali_pipelines import ImageFolderData


def decode_jpeg_file(path: str) -> torch.Tensor:
    """uint8 CHW RGB tensor from a JPEG file, decoded by torchvision's libjpeg-turbo binding."""
    return torchvision.io.decode_jpeg(torchvision.io.read_file(path), mode=ImageReadMode.RGB)


class LabeledImages(Dataset):
    """(image tensor, label) per index: ``load`` decodes a path, ``transform`` does the workload."""

    def __init__(self, data: ImageFolderData, load: Callable, transform: Callable) -> None:
        self.samples = data.samples
        self.load = load
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(self.load(path)), label


def data_loader(dataset: Dataset, spec: RunSpec) -> DataLoader:
    """The DataLoader every DataLoader backend uses: ``spec.workers`` forked processes, pinned memory
    when batches go to the GPU, persistent workers, seeded shuffling for the train workloads."""
    generator = torch.Generator().manual_seed(spec.seed)
    return DataLoader(
        dataset,
        batch_size=spec.batch_size,
        shuffle=spec.train,
        num_workers=spec.workers,
        # Pinned host memory makes the host->device copy asynchronous; without CUDA there
        # is nothing to pin for (and torch warns), so it follows the delivery device.
        pin_memory=spec.device == "gpu",
        persistent_workers=True,  # epochs reuse the workers: no process start-up per pass
        prefetch_factor=2,
        generator=generator,
        # Forked, as in a user's script on Linux before Python 3.14: workers share the parent's
        # imports and pages. Inside a benchmark job (itself started by multiprocessing) the
        # default would be the job's own start method, re-importing torch in every worker.
        multiprocessing_context="fork",
    )


def make_batches_pil(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """``torch-pil``: DataLoader with ``spec.workers`` processes decoding with PIL."""
    dataset = LabeledImages(data, load_pil, pil_transform(spec.workload))
    return ToDevice(data_loader(dataset, spec), spec)


def make_batches_tv(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """``torch-tv``: DataLoader with ``spec.workers`` processes, decode_jpeg + transforms.v2."""
    dataset = LabeledImages(data, decode_jpeg_file, tensor_transform(spec.workload))
    return ToDevice(data_loader(dataset, spec), spec)
