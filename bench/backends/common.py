"""What the PyTorch-side backends share: the workloads as PIL and as tensor transforms, and
delivery of host batches to the GPU.

Both transform sets follow torchvision's own presets, so the baselines are what a PyTorch
user would write: for ``train-aug``, the classification reference's order
(RandomResizedCrop -> RandomHorizontalFlip -> RandAugment -> ToTensor -> Normalize).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode, v2

from bench.backends import (
    CROP,
    MEAN,
    RANDAUGMENT_BINS,
    RANDAUGMENT_MAGNITUDE,
    RANDAUGMENT_OPS,
    RATIO,
    RESIZE_SHORTER,
    SCALE,
    STD,
    WORKLOADS,
    RunSpec,
)
from bench.measure import Batch


def load_pil(path: str) -> Image.Image:
    """Decode like ``torchvision.datasets.folder.pil_loader``: any image to 3-channel RGB."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def randaugment_args() -> dict[str, object]:
    """The train-aug policy's arguments to torchvision's RandAugment (classic and v2 alike).

    Bilinear sampling for shear, translate and rotate, as the classification reference passes
    (``--interpolation bilinear``; the transform's own default is nearest); ``fill`` stays
    None: black, like this project's DALI policy.
    """
    return {"num_ops": RANDAUGMENT_OPS, "magnitude": RANDAUGMENT_MAGNITUDE,
            "num_magnitude_bins": RANDAUGMENT_BINS, "interpolation": InterpolationMode.BILINEAR}


def _unknown(workload: str) -> ValueError:
    return ValueError(f"unknown workload {workload!r}; expected one of {', '.join(WORKLOADS)}")


def pil_transform(workload: str) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 CHW tensor, classic torchvision transforms (antialiased PIL resize)."""
    to_float = [transforms.ToTensor()]  # uint8 HWC -> float CHW in [0, 1]
    normalize = [transforms.Normalize(MEAN, STD)]
    if workload == "resize":
        steps = [transforms.Resize((CROP, CROP)), *to_float]
    elif workload in ("train", "train-aug"):
        policy = [transforms.RandAugment(**randaugment_args())] if workload == "train-aug" else []
        steps = [transforms.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO),
                 transforms.RandomHorizontalFlip(), *policy, *to_float, *normalize]
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
    elif workload in ("train", "train-aug"):
        # v2's RandAugment on the uint8 tensor, as the v2 reference preset runs it before ToDtype.
        policy = [v2.RandAugment(**randaugment_args())] if workload == "train-aug" else []
        steps = [v2.RandomResizedCrop(CROP, scale=SCALE, ratio=RATIO, antialias=True),
                 v2.RandomHorizontalFlip(), *policy, *to_float, *normalize]
    elif workload == "eval":
        steps = [v2.Resize(RESIZE_SHORTER, antialias=True), v2.CenterCrop(CROP), *to_float, *normalize]
    else:
        raise _unknown(workload)
    return v2.Compose(steps)


# torchvision 0.29 deprecates its image codecs in favour of TorchCodec and warns on each use. The
# torch-tv and torchvision-gpu backends measure exactly those codecs (what a PyTorch user has
# today), so the notice is silenced for them alone, matched by its text.
warnings.filterwarnings("ignore", message=r"The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

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
