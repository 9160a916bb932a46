"""``torchvision-gpu``: batched ``decode_jpeg(device="cuda")`` plus transforms.v2 on the GPU.

The alternative a PyTorch user would reach for instead of DALI. Threads of this process read
the file bytes ahead of the consumer (file reads release the GIL); the consuming thread
decodes a whole batch with nvJPEG through torchvision and runs the workload's v2 transforms
image by image on the GPU (sizes differ until the crop). No worker processes: DataLoader
workers handing tensors back through shared memory pass file descriptors between processes,
which failed with "Bad file descriptor" and stalled the run, and a CUDA tensor must never
cross a process boundary anyway.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch
import torchvision
from torchvision.io import ImageReadMode

from bench.backends import RunSpec
from bench.backends.common import tensor_transform
from bench.measure import Batch
from dali_pipelines import ImageFolderData

PREFETCH_BATCHES = 2  # batches whose files are being read while the current one is decoded
# encoded 1-D uint8 CPU tensors, device -> decoded uint8 CHW RGB tensors on that device
BatchDecode = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]


def decode_jpegs_torchvision(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One batched ``torchvision.io.decode_jpeg`` call (nvJPEG on CUDA, libjpeg-turbo on the CPU)."""
    return torchvision.io.decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def read_bytes(path: str) -> torch.Tensor:
    """A file's bytes as a 1-D uint8 CPU tensor (what ``decode_jpeg`` takes)."""
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


class GpuDecodedBatches:
    """One pass per ``iter()``: file bytes read ahead by threads, one batched decode (``decode``: nvJPEG
    through torchvision by default), the workload's transforms on the decoded tensors' device."""

    def __init__(self, data: ImageFolderData, spec: RunSpec,
                 decode: BatchDecode = decode_jpegs_torchvision) -> None:
        self.samples = data.samples
        self.decode = decode
        self.spec = spec
        self.device = spec.torch_device
        self.transform = tensor_transform(spec.workload)
        self.pool = ThreadPoolExecutor(max_workers=spec.workers, thread_name_prefix="tv-gpu-read")
        self._rng = random.Random(spec.seed)

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.spec.batch_size)

    def _order(self) -> list[tuple[str, int]]:
        samples = list(self.samples)
        if self.spec.train:
            self._rng.shuffle(samples)
        return samples

    def _read(self, chunk: list[tuple[str, int]]) -> tuple[list[Future], torch.Tensor]:
        labels = torch.tensor([label for _, label in chunk], dtype=torch.int64)
        return [self.pool.submit(read_bytes, path) for path, _ in chunk], labels

    def __iter__(self) -> Iterator[Batch]:
        samples, size = self._order(), self.spec.batch_size
        chunks = (samples[begin:begin + size] for begin in range(0, len(samples), size))
        pending: deque[tuple[list[Future], torch.Tensor]] = deque()
        for chunk in chunks:
            pending.append(self._read(chunk))
            if len(pending) <= PREFETCH_BATCHES:
                continue
            yield self._decode(*pending.popleft())
        while pending:
            yield self._decode(*pending.popleft())

    def _decode(self, reads: list[Future], labels: torch.Tensor) -> Batch:
        encoded = [read.result() for read in reads]
        # One batched nvJPEG call; returns before the GPU finishes (the meter synchronizes).
        decoded = self.decode(encoded, self.device)
        images = torch.stack([self.transform(image) for image in decoded])
        return images, labels.to(self.device, non_blocking=True)


def make_batches(data: ImageFolderData, spec: RunSpec) -> GpuDecodedBatches:
    """Batches of ``spec.workload`` decoded and transformed on the GPU."""
    if spec.device != "gpu" or not torch.cuda.is_available():
        raise RuntimeError("backend torchvision-gpu needs a CUDA GPU and --device gpu")
    return GpuDecodedBatches(data, spec)
