"""Backend registry: name -> factory with one signature ``(data, spec) -> Iterable[Batch]``.

Modules are imported only when a backend is built, so TensorFlow and CUDA stay unloaded
unless asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from bench.runner import Batch
from bench.workloads import RunSpec
from dali_pipelines import ImageFolderData

MakeBatches = Callable[[ImageFolderData, RunSpec], Iterable[Batch]]


@dataclass(frozen=True)
class Backend:
    """A named way to produce the workloads' batches."""

    name: str
    module: str  # bench.backends.<module>
    function: str  # its factory, signature MakeBatches
    needs_cuda: bool
    needs_tf: bool
    parallelism: str  # what ``RunSpec.workers`` means for it
    description: str

    def factory(self) -> MakeBatches:
        """Import the module and return the factory."""
        return getattr(importlib.import_module(f"bench.backends.{self.module}"), self.function)

    def unavailable_reason(self, device: str) -> str | None:
        """Why this backend cannot run here with batches delivered to ``device``, or None."""
        if self.needs_tf and importlib.util.find_spec("tensorflow") is None:
            return "TensorFlow is not installed (pip install 'dali-pipelines[tf]')"
        if self.needs_cuda and not torch.cuda.is_available():
            return "needs a CUDA GPU (torch.cuda.is_available() is False)"
        if self.needs_cuda and device != "cuda":
            return "delivers to the GPU; run with --device cuda"
        return None


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("naive", "naive", "make_batches", False, False, "none (sequential)",
            "sequential PIL generator, no prefetch"),
    Backend("tfdata", "tfdata", "make_batches", False, True, "tf.data thread pool",
            "tf.data map(AUTOTUNE) + prefetch(AUTOTUNE)"),
    Backend("torch-pil", "torch_loader", "make_batches_pil", False, False, "DataLoader worker processes",
            "DataLoader + PIL + torchvision.transforms"),
    Backend("torch-tv", "torch_loader", "make_batches_tv", False, False, "DataLoader worker processes",
            "DataLoader + torchvision.io.decode_jpeg + transforms.v2"),
    Backend("dali-cpu", "dali", "make_batches_cpu", False, False, "DALI CPU threads",
            "DALI graph on CPU threads"),
    Backend("dali-gpu", "dali", "make_batches_gpu", True, False, "DALI CPU threads (Huffman, I/O)",
            "DALI graph, nvJPEG mixed decode + GPU ops"),
    Backend("torchvision-gpu", "torchvision_gpu", "make_batches", True, False,
            "DataLoader worker processes (file reads)", "decode_jpeg(device='cuda') + v2 on GPU"),
)}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; the error lists the accepted names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}") from None
