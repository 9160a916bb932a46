"""``dali-cpu`` and ``dali-gpu``: this project's graphs through the library's ``make_loader``.

The same graph runs on CPU threads (``dali-cpu``) or decodes with nvJPEG ("mixed": Huffman
on CPU threads or the hardware decoder, the rest on the GPU) for ``dali-gpu``. ``train`` and
``eval`` are the library's own graphs; ``train-aug`` is the train graph with the library's
RandAugment (``augment="randaugment"``); ``resize`` is a benchmark-only graph, defined here.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from nvidia.dali import fn, pipeline_def
from nvidia.dali.pipeline import DataNode

from bench.backends import RANDAUGMENT_BINS, RANDAUGMENT_MAGNITUDE, RANDAUGMENT_OPS, RunSpec
from bench.backends.common import ToDevice
from bench.measure import Batch
from dali_pipelines import DataSource, PipelineConfig, make_loader
from dali_pipelines.graphs import DALI_DTYPES, DALI_LAYOUTS, decoder_args, labels_out, resize_square
from dali_pipelines.readers import read_encoded


@pipeline_def(enable_checkpointing=True)
def resize_graph(source: DataSource, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """Read -> ``resize_images``."""
    jpegs, labels = read_encoded(source, cfg, train=False)
    return resize_images(jpegs, cfg), labels_out(labels, cfg)


def resize_images(jpegs: DataNode, cfg: PipelineConfig) -> DataNode:
    """Encoded JPEGs -> decode -> resize to crop_size x crop_size (aspect not kept) -> float [0, 1].

    The simplest loaders' work, for like-for-like benchmarks: no crop, no normalize.
    """
    images = fn.decoders.image(jpegs, **decoder_args(cfg))
    images = resize_square(images, cfg.crop_size)
    return fn.crop_mirror_normalize(
        images,
        mean=[0.0, 0.0, 0.0],
        std=[255.0, 255.0, 255.0],  # x / 255: float in [0, 1]
        dtype=DALI_DTYPES[cfg.dtype],
        output_layout=DALI_LAYOUTS[cfg.layout],
    )


def config_for(spec: RunSpec, device: str) -> PipelineConfig:
    """The PipelineConfig that does ``spec``'s work with ``spec.workers`` DALI threads."""
    extra: dict = {} if spec.hw_decoder_load is None else {"hw_decoder_load": spec.hw_decoder_load}
    if spec.prefetch is not None:
        extra["prefetch_queue_depth"] = spec.prefetch
    if spec.workload == "train-aug":
        extra.update(augment="randaugment", augment_ops=RANDAUGMENT_OPS,
                     augment_magnitude=RANDAUGMENT_MAGNITUDE, augment_magnitude_bins=RANDAUGMENT_BINS)
    return PipelineConfig(batch_size=spec.batch_size, num_threads=spec.workers, device=device,
                          seed=spec.seed, **extra)


def _make(data: DataSource, spec: RunSpec, device: str) -> Iterable[Batch]:
    graph = resize_graph if spec.workload == "resize" else None  # the others: the library's own graphs
    loader = make_loader(data, config_for(spec, device), train=spec.train, graph=graph)
    return ToDevice(loader, spec)


def make_batches_cpu(data: DataSource, spec: RunSpec) -> Iterable[Batch]:
    """``dali-cpu``: the graph on ``spec.workers`` CPU threads; host batches (copied if to GPU)."""
    return _make(data, spec, "cpu")


def make_batches_gpu(data: DataSource, spec: RunSpec) -> Iterable[Batch]:
    """``dali-gpu``: nvJPEG decode and GPU operators; batches already on the GPU."""
    if spec.device != "gpu" or not torch.cuda.is_available():
        raise RuntimeError("backend dali-gpu needs a CUDA GPU and --device gpu")
    return _make(data, spec, "gpu")
