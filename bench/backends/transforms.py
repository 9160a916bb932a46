"""The three workloads written once for PIL images and once for uint8 image tensors (CPU or GPU).

Both follow torchvision's own presets, so the baselines are what a PyTorch user would write.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import v2

from bench.workloads import CROP, MEAN, RATIO, RESIZE_SHORTER, SCALE, STD


def load_pil(path: str) -> Image.Image:
    """Decode like ``torchvision.datasets.folder.pil_loader``: any image to 3-channel RGB."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def pil_transform(workload: str) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 CHW tensor, classic torchvision transforms (antialiased PIL resize)."""
    to_float = [transforms.ToTensor()]  # uint8 HWC -> float CHW in [0, 1]
    normalize = [transforms.Normalize(MEAN, STD)]
    if workload == "seed":
        steps = [transforms.Resize((CROP, CROP)), *to_float]
    elif workload == "train":
        steps = [transforms.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO),
                 transforms.RandomHorizontalFlip(), *to_float, *normalize]
    elif workload == "eval":
        steps = [transforms.Resize(RESIZE_SHORTER), transforms.CenterCrop(CROP), *to_float, *normalize]
    else:
        raise ValueError(f"unknown workload {workload!r}; expected seed, train or eval")
    return transforms.Compose(steps)


def tensor_transform(workload: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 CHW tensor (CPU or CUDA) -> float32 CHW, torchvision.transforms.v2 (antialiased)."""
    to_float = [v2.ToDtype(torch.float32, scale=True)]
    normalize = [v2.Normalize(list(MEAN), list(STD))]
    if workload == "seed":
        steps = [v2.Resize((CROP, CROP), antialias=True), *to_float]
    elif workload == "train":
        steps = [v2.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO, antialias=True),
                 v2.RandomHorizontalFlip(), *to_float, *normalize]
    elif workload == "eval":
        steps = [v2.Resize(RESIZE_SHORTER, antialias=True), v2.CenterCrop(CROP), *to_float, *normalize]
    else:
        raise ValueError(f"unknown workload {workload!r}; expected seed, train or eval")
    return v2.Compose(steps)
