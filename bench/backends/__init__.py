"""The declared work (workloads) and the backends that do it, each with one factory signature.

Every backend module implements every workload in ``WORKLOADS``, or its ``Backend`` entry
says in ``skips`` why it cannot (the sweep records that as skipped); a factory
``(data, spec) -> Iterable[(images, labels)]`` hands over float32 NCHW batches of
[N, 3, 224, 224] and int64 labels [N] on ``spec.device``. To add a workload: declare it in
``WORKLOADS`` and give each backend module its version (the agreement tests compare them).
Backend modules are imported only when a backend is built, so TensorFlow and CUDA stay
unloaded unless asked for; a backend whose library may be missing names a ``probe``
(``availability``) that says why it cannot run, and the run leaves it out with that reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bench.backends.availability import spdl_missing, torchcodec_missing
from bench.measure import Batch
from dali_pipelines import DataSource
from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD

# name -> the work, identical in every backend.
WORKLOADS: dict[str, str] = {
    "resize": "decode, resize to 224x224 (aspect not kept), float in [0, 1], CHW",
    "train": "decode, RandomResizedCrop(224, scale 0.08-1, ratio 3/4-4/3), random horizontal flip, "
             "ImageNet mean/std normalize, CHW",
    "train-aug": "train plus RandAugment (2 operations, magnitude 9 of 31 bins, bilinear, black fill) "
                 "after the flip, before normalize",
    "eval": "decode, resize shorter side to 256, center crop 224, ImageNet mean/std normalize, CHW",
}
CROP = 224  # output side of every workload
RESIZE_SHORTER = 256  # eval: shorter side before the center crop
SCALE = (0.08, 1.0)  # train: RandomResizedCrop area fraction
RATIO = (3 / 4, 4 / 3)  # train: RandomResizedCrop aspect ratio
MEAN = IMAGENET_MEAN  # train/eval normalize, [0, 1] scale
STD = IMAGENET_STD
# train-aug: torchvision's RandAugment(num_ops, magnitude, num_magnitude_bins), the recipe's
# values, pinned here so the workload does not move with any library default.
RANDAUGMENT_OPS = 2
RANDAUGMENT_MAGNITUDE = 9
RANDAUGMENT_BINS = 31
TRAIN_WORKLOADS = ("train", "train-aug")  # shuffled order and random draws
DEVICES = ("cpu", "gpu")  # where batches are delivered

MakeBatches = Callable[[DataSource, "RunSpec"], Iterable[Batch]]


@dataclass(frozen=True)
class RunSpec:
    """What one backend is asked to produce, and with how much parallelism.

    ``workers`` is the backend's own parallelism knob (DataLoader processes, DALI threads,
    tf.data thread pool, reader threads); ``device`` is where the batches must end up.
    """

    workload: str = "train"
    batch_size: int = 64
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    device: str = "cpu"
    seed: int = 0
    hw_decoder_load: float | None = None  # dali-gpu only; None keeps the library's default
    prefetch: int | None = None  # dali-cpu, dali-gpu: DALI's prefetch queue depth; None: the default

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}; got {self.workload!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError(f"batch_size and workers must be >= 1; got {self.batch_size}, {self.workers}")
        if self.hw_decoder_load is not None and not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError(f"hw_decoder_load must be in [0, 1]; got {self.hw_decoder_load}")
        if self.prefetch is not None and self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1; got {self.prefetch}")

    @property
    def train(self) -> bool:
        """Random augmentation and shuffled order (the train workloads)."""
        return self.workload in TRAIN_WORKLOADS

    @property
    def torch_device(self) -> torch.device:
        """``spec.device`` as torch names it ("gpu" is CUDA device 0)."""
        return torch.device("cuda" if self.device == "gpu" else "cpu")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Backend:
    """A named way to produce the workloads' batches."""

    name: str
    module: str  # bench.backends.<module>
    function: str  # its factory, signature MakeBatches
    gpu_only: bool  # decodes on the GPU: needs CUDA and --device gpu
    needs_tf: bool
    parallelism: str  # what ``RunSpec.workers`` means for it
    description: str
    skips: Mapping[str, str] = dataclasses.field(default_factory=dict)  # workload -> why it cannot run it
    # device -> why its library cannot run here (not installed, no FFmpeg, a build without nvJPEG)
    probe: Callable[[str], str | None] | None = None

    def factory(self) -> MakeBatches:
        """Import the module and return the factory."""
        return getattr(importlib.import_module(f"bench.backends.{self.module}"), self.function)

    def skip_reason(self, workload: str) -> str | None:
        """Why this backend does not run ``workload`` anywhere (recorded as skipped); None if it does."""
        return self.skips.get(workload)

    def unavailable_reason(self, device: str) -> str | None:
        """Why this backend cannot deliver batches to ``device`` here, with the fix; None if it can."""
        if self.needs_tf and importlib.util.find_spec("tensorflow") is None:
            return "needs TensorFlow: pip install 'dali-pipelines[tf]'"
        if self.gpu_only and not torch.cuda.is_available():
            return "needs a CUDA GPU and none is visible"
        if self.gpu_only and device != "gpu":
            return "decodes on the GPU: run with --device gpu"
        return self.probe(device) if self.probe else None


# TensorFlow has no RandAugment operator. Keras's RandAugment layer (which ships with it) is another
# policy and another cost, so running it would measure different work than every other backend.
TF_NO_RANDAUGMENT = ("TensorFlow has no RandAugment operator; Keras's RandAugment layer is a different "
                     "policy (11 operations at a random strength up to `factor`) and computes all 11 on "
                     "every image before selecting, so neither its work nor its cost is torchvision's")

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("naive", "naive", "make_batches", False, False, "none (sequential)",
            "sequential PIL generator, no prefetch"),
    Backend("tfdata", "tfdata", "make_batches", False, True, "tf.data thread pool",
            "tf.data map(AUTOTUNE) + prefetch(AUTOTUNE)", skips={"train-aug": TF_NO_RANDAUGMENT}),
    Backend("torch-pil", "torch_loader", "make_batches_pil", False, False, "DataLoader worker processes",
            "DataLoader + PIL + torchvision.transforms"),
    Backend("torch-tv", "torch_loader", "make_batches_tv", False, False, "DataLoader worker processes",
            "DataLoader + torchvision.io.decode_jpeg + transforms.v2"),
    Backend("dali-cpu", "dali", "make_batches_cpu", False, False, "DALI CPU threads",
            "this project's DALI graphs on CPU threads"),
    Backend("dali-gpu", "dali", "make_batches_gpu", True, False, "DALI CPU threads (Huffman, I/O)",
            "this project's DALI graphs, nvJPEG mixed decode + GPU operators"),
    Backend("dali-ref", "dali_ref", "make_batches", False, False, "DALI CPU threads",
            "NVIDIA's ResNet-50 example graph: mixed decode on --device gpu, CPU otherwise"),
    Backend("torchvision-gpu", "torchvision_gpu", "make_batches", True, False, "file-reading threads",
            "batched decode_jpeg(device='cuda') + transforms.v2 on the GPU"),
    # Today's alternatives (docs/peers.md): each follows --device, like dali-ref.
    Backend("spdl", "spdl_pipeline", "make_batches", False, False, "SPDL pipeline threads",
            "SPDL DataLoader: FFmpeg decode + swscale resize on threads; nvJPEG per image on --device gpu",
            probe=spdl_missing),
    Backend("torchcodec", "torchcodec_loader", "make_batches", False, False,
            "DataLoader worker processes (cpu), file-reading threads (gpu)",
            "torchcodec decode_jpeg + transforms.v2: DataLoader workers, or batched nvJPEG on --device gpu",
            probe=torchcodec_missing),
    Backend("dali-proxy", "dali_proxy", "make_batches", False, False,
            "DALI threads, behind DataLoader workers that only name the files",
            "this project's graphs in a DALI server, fed by a DataLoader through DALI's proxy"),
)}
PEERS = ("spdl", "torchcodec", "dali-proxy")  # compared with this project's graph on the same device
DALI_BACKENDS = ("dali-cpu", "dali-gpu")  # this project's graphs, compared with dali-ref
REFERENCE = "dali-ref"


def get_backend(name: str) -> Backend:
    """The backend called ``name``; the error lists the accepted names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}") from None
