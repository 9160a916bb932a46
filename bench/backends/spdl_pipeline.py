"""``spdl``: Meta's SPDL, a pipeline of threads around C++ media functions that release the GIL.

Written the way SPDL's own examples load ImageNet: ``spdl.dataloader.DataLoader`` over
(path, label) items, a per-image preprocessor on ``spec.workers`` threads and a per-batch
aggregator. On ``--device cpu`` the preprocessor demuxes the JPEG (its header gives the size),
draws the workload's window by torchvision's rules, and decodes with FFmpeg through one filter
graph: crop, swscale resize, flip, RGB. The aggregator copies the frames into one batch
(``convert_frames``) and turns it into normalized float32 NCHW, as every backend delivers.
``train-aug`` runs torchvision's v2 RandAugment on each decoded 224x224 uint8 image (SPDL has
no augmentation policy of its own). On ``--device gpu`` each image is decoded with nvJPEG by
``spdl.io.decode_image_nvjpeg`` and the workload's v2 transforms run on the GPU tensor, as in
``torchvision-gpu``; SPDL's fused ``load_image_batch_nvjpeg`` resize is not used because it
resizes with NPP's Lanczos filter, not the declared antialiased bilinear one, and it decodes
the batch one image after another anyway (a loop of ``nvjpegDecode`` in SPDL's source).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import spdl.io
import torch
from spdl.dataloader import DataLoader
from torchvision import transforms
from torchvision.transforms import v2

from bench.backends import CROP, MEAN, RATIO, RESIZE_SHORTER, SCALE, STD, RunSpec
from bench.backends.common import randaugment_args, tensor_transform
from bench.measure import Batch
from dali_pipelines import ImageFolderData

# swscale's bilinear filter widens with the downscale factor (a triangle over the source pixels
# each output pixel covers: antialiased like PIL's bilinear); accurate_rnd and full_chroma_int
# round exactly and convert to RGB from full-resolution chroma, the closest to libjpeg's output.
SCALE_FLAGS = "bilinear+accurate_rnd+full_chroma_int"
BUFFER_BATCHES = 3  # finished batches held for the consumer (SPDL's default)

Sample = tuple[str, int]
Window = tuple[int, int, int, int]  # top, left, height, width in source pixels


def train_window(height: int, width: int) -> Window:
    """RandomResizedCrop's window for an image of this size, drawn by torchvision's own code
    (from torch's global generator; the zero-size tensor only carries the size)."""
    return transforms.RandomResizedCrop.get_params(torch.empty(0, height, width), list(SCALE), list(RATIO))


def eval_sizes(height: int, width: int) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left) of Resize(256) + CenterCrop(224), as torchvision
    computes them: the longer side truncated, the crop offset rounded half to even."""
    short, long = min(height, width), max(height, width)
    resized_long = int(RESIZE_SHORTER * long / short)
    h, w = (RESIZE_SHORTER, resized_long) if height <= width else (resized_long, RESIZE_SHORTER)
    return h, w, round((h - CROP) / 2.0), round((w - CROP) / 2.0)


def filter_desc(workload: str, height: int, width: int) -> str:
    """The FFmpeg filter graph that does ``workload``'s geometry on one decoded image, ending in RGB.

    For the train workloads it draws the crop window and the flip, from torch's global generator.
    """
    scale = f"scale=w={CROP}:h={CROP}:flags={SCALE_FLAGS}"
    if workload == "resize":
        steps = [scale]
    elif workload == "eval":
        h, w, top, left = eval_sizes(height, width)
        steps = [f"scale=w={w}:h={h}:flags={SCALE_FLAGS}", f"crop=w={CROP}:h={CROP}:x={left}:y={top}"]
    else:  # train, train-aug
        top, left, h, w = train_window(height, width)
        # exact=1: odd offsets on 4:2:0 images are kept, not rounded down to even.
        steps = [f"crop=w={w}:h={h}:x={left}:y={top}:exact=1", scale]
        if torch.rand(1).item() < 0.5:  # RandomHorizontalFlip(0.5), on the 224x224 result
            steps.append("hflip")
    return ",".join([*steps, "format=pix_fmts=rgb24"])


class Samples:
    """Re-iterable (path, label) source: file order, or a fresh seeded shuffle per pass (train)."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        self.samples = list(data.samples)
        self.shuffle = spec.train
        self._rng = random.Random(spec.seed)

    def __iter__(self) -> Iterator[Sample]:
        order = list(self.samples)
        if self.shuffle:
            self._rng.shuffle(order)
        return iter(order)


def _scale_and_shift(workload: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel so that uint8 x -> x * scale - shift is the workload's float output."""
    if workload == "resize":
        return torch.full((1, 3, 1, 1), 1 / 255), torch.zeros(1, 3, 1, 1)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return 1 / (255 * std), mean / std


class CpuDecode:
    """The CPU preprocessor and aggregator: FFmpeg decode through the workload's filter graph."""

    def __init__(self, workload: str) -> None:
        self.workload = workload
        self.policy = v2.RandAugment(**randaugment_args()) if workload == "train-aug" else None
        self.scale, self.shift = _scale_and_shift(workload)

    def decode(self, sample: Sample) -> tuple[object, int]:
        """One image: demux (the header gives the size), decode + filter; train-aug: the policy too."""
        path, label = sample
        packets = spdl.io.demux_image(path)
        graph = filter_desc(self.workload, packets.codec.height, packets.codec.width)
        frames = spdl.io.decode_packets(packets, filter_desc=graph)
        if self.policy is None:
            return frames, label
        image = spdl.io.to_torch(spdl.io.convert_frames(frames)).permute(2, 0, 1)  # HWC view as CHW
        return self.policy(image), label

    def batch(self, items: list[tuple[object, int]]) -> Batch:
        """Frames -> one uint8 batch (one copy, SPDL's ``convert_frames``) -> float32 NCHW."""
        images, labels = zip(*items, strict=True)
        if self.policy is None:
            uint8 = spdl.io.to_torch(spdl.io.convert_frames(list(images))).permute(0, 3, 1, 2)
        else:
            uint8 = torch.stack(images)
        out = torch.empty(uint8.shape, dtype=torch.float32)
        out.copy_(uint8)  # NHWC -> NCHW and uint8 -> float in one pass
        out.mul_(self.scale).sub_(self.shift)
        return out, torch.tensor(labels, dtype=torch.int64)


class GpuDecode:
    """The GPU preprocessor and aggregator: nvJPEG decode through SPDL, v2 transforms on the GPU."""

    def __init__(self, workload: str) -> None:
        self.transform = tensor_transform(workload)
        self.device = torch.device("cuda")
        # Device memory from torch's caching allocator, as SPDL's examples configure it.
        allocator = (torch.cuda.caching_allocator_alloc, torch.cuda.caching_allocator_delete)
        self.cuda_config = spdl.io.cuda_config(device_index=0, allocator=allocator)

    def decode(self, sample: Sample) -> tuple[torch.Tensor, int]:
        """One image: nvJPEG decode to planar RGB [3, H, W] on the GPU, then the workload."""
        path, label = sample
        with open(path, "rb") as f:
            encoded = f.read()
        # Synchronous on SPDL's per-thread stream: the tensor is complete when it returns.
        image = spdl.io.to_torch(spdl.io.decode_image_nvjpeg(encoded, device_config=self.cuda_config))
        return self.transform(image), label

    def batch(self, items: list[tuple[torch.Tensor, int]]) -> Batch:
        """Stack the transformed images; labels to the GPU."""
        images, labels = zip(*items, strict=True)
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64).to(self.device, non_blocking=True)


class SpdlBatches:
    """One SPDL pipeline per ``iter()`` (a pass), as ``spdl.dataloader.DataLoader`` builds them."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        self.batches = math.ceil(len(data) / spec.batch_size)
        stages = GpuDecode(spec.workload) if spec.device == "gpu" else CpuDecode(spec.workload)
        self.loader = DataLoader(
            Samples(data, spec), preprocessor=stages.decode, batch_size=spec.batch_size,
            aggregator=stages.batch, buffer_size=BUFFER_BATCHES, num_threads=spec.workers,
            # File order for eval and resize (as every backend keeps it); training takes whatever
            # image finishes first.
            output_order="completion" if spec.train else "input")

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def make_batches(data: ImageFolderData, spec: RunSpec) -> SpdlBatches:
    """Batches of ``spec.workload`` from SPDL: FFmpeg on ``spec.workers`` threads, or nvJPEG on gpu.

    On the CPU, torch runs one intra-op thread, as in a DataLoader worker: the tensor work inside
    SPDL's threads (the batch's float conversion, train-aug's policy) then uses no more cores
    than ``spec.workers``, the parallelism every backend is given.
    """
    if spec.device == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("backend spdl with --device gpu needs a CUDA GPU")
    else:
        torch.set_num_threads(1)
    return SpdlBatches(data, spec)
