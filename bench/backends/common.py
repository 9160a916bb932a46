"""What the PyTorch-side backends share: the workloads as PIL and as tensor transforms, and
delivery of host batches to the GPU.

Both transform sets follow torchvision's own presets, so the baselines are what a PyTorch
user would write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import v2

from bench.backends import CROP, MEAN, RATIO, RESIZE_SHORTER, SCALE, STD, WORKLOADS, RunSpec
from bench.measure import Batch


def load_pil(path: str) -> Image.Image:
    """Decode like ``torchvision.datasets.folder.pil_loader``: any image to 3-channel RGB."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def _unknown(workload: str) -> ValueError:
    return ValueError(f"unknown workload {workload!r}; expected one of {', '.join(WORKLOADS)}")


def pil_transform(workload: str) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 CHW tensor, classic torchvision transforms (antialiased PIL resize)."""
    to_float = [transforms.ToTensor()]  # uint8 HWC -> float CHW in [0, 1]
    normalize = [transforms.Normalize(MEAN, STD)]
    if workload == "resize":
        steps = [transforms.Resize((CROP, CROP)), *to_float]
    elif workload == "train":
        steps = [transforms.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO),
                 transforms.RandomHorizontalFlip(), *to_float, *normalize]
    elif workload == "eval":
        steps = [transforms.Resize(RESIZE_SHORTER), transforms.CenterCrop(CROP), *to_float, *normalize]
    else:
        raise _unknown(workload)
    return transforms.Compose(steps)


def tensor_transform(workload: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 CHW tensor (CPU or CUDA) -> float32 CHW, torchvision.transforms.v2 (antialiased)."""
    to_float = [v2.ToDtype(torch.float32, scale=True)]
    normalize = [v2.Normalize(list(MEAN), list(STD))]
    if workload == "resize":
        steps = [v2.Resize((CROP, CROP), antialias=True), *to_float]
    elif workload == "train":
        steps = [v2.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO, antialias=True),
                 v2.RandomHorizontalFlip(), *to_float, *normalize]
    elif workload == "eval":
        steps = [v2.Resize(RESIZE_SHORTER, antialias=True), v2.CenterCrop(CROP), *to_float, *normalize]
    else:
        raise _unknown(workload)
    return v2.Compose(steps)


class ToDevice:
    """Re-iterable wrapper that moves host batches to ``spec.device`` (no-op for "cpu").

    The copy is part of the declared work when the comparison is "to the GPU"; from pinned
    memory it is asynchronous (``non_blocking``) and the meter's final sync accounts for it.
    """

    def __init__(self, batches: Iterable[Batch], spec: RunSpec) -> None:
        self.batches = batches
        self.device = spec.torch_device

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        if self.device.type == "cpu":
            yield from self.batches
            return
        for images, labels in self.batches:
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))
