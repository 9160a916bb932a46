"""``dali-cpu`` and ``dali-gpu``: the project's own graphs through ``make_loader``.

The same graph runs on CPU threads (``dali-cpu``) or decodes with nvJPEG ("mixed": Huffman
on CPU threads or the hardware decoder, the rest on the GPU) for ``dali-gpu``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench.backends.common import ToDevice
from bench.runner import Batch
from bench.workloads import RunSpec
from dali_pipelines import ImageFolderData, PipelineConfig, make_loader


def config_for(spec: RunSpec, device: str) -> PipelineConfig:
    """The PipelineConfig that does ``spec``'s work with ``spec.workers`` DALI threads."""
    return PipelineConfig(
        batch_size=spec.batch_size,
        num_threads=spec.workers,
        device=device,
        seed=spec.seed,
        hw_decoder_load=spec.hw_decoder_load,
    )


def _make(data: ImageFolderData, spec: RunSpec, device: str) -> Iterable[Batch]:
    loader = make_loader(data, config_for(spec, device), train=spec.train, workload=spec.workload)
    return ToDevice(loader, spec.device)


def make_batches_cpu(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """``dali-cpu``: the graph on ``spec.workers`` CPU threads; host batches (copied if to GPU)."""
    return _make(data, spec, "cpu")


def make_batches_gpu(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """``dali-gpu``: nvJPEG decode and GPU operators; batches already on the GPU."""
    if spec.device != "cuda" or not torch.cuda.is_available():
        raise RuntimeError("backend dali-gpu needs a CUDA GPU and --device cuda")
    return _make(data, spec, "gpu")
