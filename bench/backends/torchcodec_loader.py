"""``torchcodec``: torchvision's successor for decoding, as a PyTorch user would drop it in.

torchvision 0.29 deprecates its image codecs for TorchCodec's. On ``--device cpu`` this is
``torch-tv`` with the decoder swapped: a ``DataLoader`` whose worker processes decode with
``torchcodec.decoders.decode_jpeg`` (libjpeg-turbo, shipped in the wheel) and run the
workload's ``transforms.v2``. On ``--device gpu`` it is ``torchvision-gpu`` with the decoder
swapped: reader threads, one batched ``decode_jpeg(..., device="cuda")`` call (nvJPEG, shipped
in the wheel) per batch, then the same v2 transforms on the GPU tensors.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torchcodec.decoders import decode_jpeg

from bench.backends import RunSpec
from bench.backends.common import ToDevice, tensor_transform
from bench.backends.torch_loader import LabeledImages, data_loader
from bench.backends.torchvision_gpu import GpuDecodedBatches
from bench.measure import Batch
from dali_pipelines import ImageFolderData


def decode_jpeg_file(path: str) -> torch.Tensor:
    """uint8 CHW RGB tensor from a JPEG file, decoded by torchcodec on the CPU."""
    return decode_jpeg(path, mode="RGB")


def decode_jpegs(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One ``decode_jpeg`` call for the whole batch (one nvJPEG batch on CUDA)."""
    return decode_jpeg(encoded, mode="RGB", device=device)


def make_batches(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """Batches of ``spec.workload``: DataLoader workers on the CPU, batched nvJPEG on the GPU."""
    if spec.device == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("backend torchcodec with --device gpu needs a CUDA GPU")
        return GpuDecodedBatches(data, spec, decode=decode_jpegs)
    dataset = LabeledImages(data, decode_jpeg_file, tensor_transform(spec.workload))
    return ToDevice(data_loader(dataset, spec), spec)
