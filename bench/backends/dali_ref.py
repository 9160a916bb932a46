"""``dali-ref``: NVIDIA's DALI example graph (PyTorch ResNet-50), written plainly: the yardstick.

The graph follows ``docs/examples/use_cases/pytorch/resnet50/main.py`` in NVIDIA's DALI
repository: a file reader shuffled for training, a region-of-interest decoder with
preallocation hints on "mixed", ``fn.resize`` and ``fn.crop_mirror_normalize``, read through
DALI's own PyTorch iterator. Nothing goes through this project's library, so the report's
``dali-* / dali-ref`` ratios say what the project's graphs add or cost against it.

Where the example's settings differ from the declared workloads, the workloads win, so the
work is identical to every other backend's: RandomResizedCrop's area and aspect ranges, and
the ``resize`` workload (which the example does not have). The example's
``INTERP_TRIANGULAR`` is written in DALI's current spelling, linear with ``antialias=True``.
The device follows ``--device``: "mixed" decoding and GPU operators for ``gpu``, CPU
operators for ``cpu`` (the example's CPU mode still moves the batch to the GPU at the end;
here a CPU run stays on the CPU, so it can be compared with ``dali-cpu``).

``train-aug`` adds DALI's stock ``nvidia.dali.auto_aug.rand_augment.rand_augment`` after the
resize, the way NVIDIA's EfficientNet example (``docs/examples/use_cases/pytorch/efficientnet``)
adds its automatic augmentations: ``fn.flip`` with the random flag, the policy on the uint8
images, then ``crop_mirror_normalize`` without mirroring, in a graph built with
``enable_conditionals=True`` (the policy picks operations per sample with ``if``). Same
operations, number of operations, magnitude and bins as everywhere; the stock suite differs
from torchvision's in details (grey fill 128 where torchvision fills black, translations up to
100/224 of the side not truncated to whole pixels where torchvision has 150/331 in whole
pixels, solarize thresholds from 256), which this project's own graphs restate as torchvision's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.auto_aug import rand_augment
from nvidia.dali.pipeline import DataNode, Pipeline
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

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
    TRAIN_WORKLOADS,
    RunSpec,
)
from bench.measure import Batch
from dali_pipelines import ImageFolderData

# The example's nvJPEG preallocation for the largest ImageNet image (5980 x 6430), so the
# "mixed" decoder never grows its buffers mid-run (a reallocation is a device sync).
PREALLOCATE_WIDTH = 5980
PREALLOCATE_HEIGHT = 6430


def _decode_and_resize(jpegs: DataNode, workload: str, decoder: str) -> tuple[DataNode, DataNode | bool]:
    """Decoded, resized images of ``workload`` and the flip flag for crop_mirror_normalize."""
    if workload in TRAIN_WORKLOADS:
        # As in the example: the hints on the training decoder only, and only for "mixed".
        hints = ({"preallocate_width_hint": PREALLOCATE_WIDTH, "preallocate_height_hint": PREALLOCATE_HEIGHT}
                 if decoder == "mixed" else {})
        images = fn.decoders.image_random_crop(
            jpegs, device=decoder, output_type=types.RGB, random_area=list(SCALE),
            random_aspect_ratio=list(RATIO), num_attempts=100, **hints)
        images = fn.resize(images, resize_x=CROP, resize_y=CROP, interp_type=types.INTERP_LINEAR,
                           antialias=True)
        return images, fn.random.coin_flip(probability=0.5)
    images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
    if workload == "eval":
        images = fn.resize(images, resize_shorter=RESIZE_SHORTER, interp_type=types.INTERP_LINEAR,
                           antialias=True)
    else:  # resize
        images = fn.resize(images, resize_x=CROP, resize_y=CROP, interp_type=types.INTERP_LINEAR,
                           antialias=True)
    return images, False


def reference_graph(files: list[str], labels: list[int], workload: str,
                    gpu: bool) -> tuple[DataNode, DataNode]:
    """Reader -> decode (ROI for train) -> resize -> [flip, RandAugment] -> crop_mirror_normalize,
    as NVIDIA writes it."""
    jpegs, label = fn.readers.file(files=files, labels=labels, random_shuffle=workload in TRAIN_WORKLOADS,
                                   pad_last_batch=True, name="Reader")
    images, mirror = _decode_and_resize(jpegs, workload, "mixed" if gpu else "cpu")
    if workload == "train-aug":  # a Python condition: decided once, when the graph is built
        images = rand_augment.rand_augment(fn.flip(images, horizontal=mirror), n=RANDAUGMENT_OPS,
                                           m=RANDAUGMENT_MAGNITUDE, num_magnitude_bins=RANDAUGMENT_BINS,
                                           shape=[CROP, CROP])
        mirror = False
    if workload == "resize":  # x / 255: float in [0, 1], no crop
        norm = {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}
    else:
        norm = {"mean": [m * 255 for m in MEAN], "std": [s * 255 for s in STD], "crop": (CROP, CROP)}
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mirror=mirror,
                                      **norm)
    return images, label.gpu() if gpu else label


reference_pipeline = pipeline_def(exec_dynamic=True)(reference_graph)
# The policy's per-sample choice of operations is an ``if`` on DataNodes: conditionals on.
reference_aug_pipeline = pipeline_def(exec_dynamic=True, enable_conditionals=True)(reference_graph)


def _without_stock_deprecations(build: Callable[[], Pipeline]) -> Pipeline:
    """``build()``, minus the DeprecationWarnings DALI raises about its own stock suite.

    The stock RandAugment calls the ``fn.experimental`` aliases of ``filter`` and ``equalize``,
    and DALI warns about each call whenever a graph is built, under its own
    ``simplefilter("default")`` (past any filter set here). Recording the warnings is the one
    way to catch them; any other warning is shown as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        pipe = build()
    for w in caught:
        if not (issubclass(w.category, DeprecationWarning) and "fn.experimental." in str(w.message)):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return pipe


class ReferenceBatches:
    """DALI's PyTorch iterator over the reference graph, as (images, int64 labels) per batch."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        gpu = spec.device == "gpu"
        graph = reference_aug_pipeline if spec.workload == "train-aug" else reference_pipeline
        pipe = _without_stock_deprecations(lambda: graph(
            list(data.files), list(data.labels), spec.workload, gpu, batch_size=spec.batch_size,
            num_threads=spec.workers, device_id=0 if gpu else None, seed=12 + spec.seed))
        self.iterator = DALIGenericIterator(pipe, ["images", "labels"], reader_name="Reader",
                                            last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)
        self.batches = math.ceil(len(data) / spec.batch_size)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        for outputs in self.iterator:
            yield outputs[0]["images"], outputs[0]["labels"].reshape(-1).long()


def make_batches(data: ImageFolderData, spec: RunSpec) -> ReferenceBatches:
    """NVIDIA's example graph for ``spec.workload`` on ``spec.device`` ("mixed" decode on gpu)."""
    return ReferenceBatches(data, spec)
