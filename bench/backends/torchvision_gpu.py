"""``torchvision-gpu``: batched ``decode_jpeg(device="cuda")`` plus transforms.v2 on the GPU.

The alternative a PyTorch user would reach for instead of DALI: DataLoader workers only read
file bytes; the main process decodes a whole batch with nvJPEG through torchvision and runs
the workload's v2 transforms image by image on the GPU (sizes differ until the crop).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode

from bench.backends.transforms import tensor_transform
from bench.runner import Batch
from bench.workloads import RunSpec
from dali_pipelines import ImageFolderData


class EncodedFiles(Dataset):
    """(file bytes as a uint8 tensor, label) per index: the only work done in workers."""

    def __init__(self, data: ImageFolderData) -> None:
        self.samples = data.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return torchvision.io.read_file(path), label


def _as_list(items: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [data for data, _ in items], torch.tensor([label for _, label in items], dtype=torch.int64)


class GpuDecodedBatches:
    """One pass per ``iter()``: bytes from workers, nvJPEG batch decode, GPU transforms."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        self.device = torch.device("cuda")
        self.transform = tensor_transform(spec.workload)
        self.loader = DataLoader(
            EncodedFiles(data), batch_size=spec.batch_size, shuffle=spec.train,
            num_workers=spec.workers, collate_fn=_as_list, persistent_workers=True,
            generator=torch.Generator().manual_seed(spec.seed))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for encoded, labels in self.loader:
            # One batched nvJPEG call; returns before the GPU finishes (the runner syncs).
            decoded = torchvision.io.decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
            images = torch.stack([self.transform(image) for image in decoded])
            yield images, labels.to(self.device, non_blocking=True)


def make_batches(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """Batches of ``spec.workload`` decoded and transformed on the GPU."""
    if spec.device != "cuda" or not torch.cuda.is_available():
        raise RuntimeError("backend torchvision-gpu needs a CUDA GPU and --device cuda")
    return GpuDecodedBatches(data, spec)
