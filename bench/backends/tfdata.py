"""``tfdata``: from_tensor_slices -> map(AUTOTUNE) -> batch -> prefetch(AUTOTUNE), to torch.

TensorFlow is imported lazily (it is the optional ``tf`` extra) with its C++ logs quieted.
The train workload uses TF's own fast path, ``decode_and_crop_jpeg`` with a
``sample_distorted_bounding_box`` window (TF's RandomResizedCrop): it decodes only the
crop, like DALI's ROI decode, so the baseline is not handicapped. ``train-aug`` is not run:
TensorFlow has no RandAugment (the registry's ``skips`` says why, and the sweep records it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from bench.backends import BACKENDS, CROP, MEAN, RATIO, RESIZE_SHORTER, SCALE, STD, RunSpec
from bench.backends.common import ToDevice
from bench.measure import Batch
from dali_pipelines import ImageFolderData
from dali_pipelines._util.native_stderr import native_stderr


def _import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before import: silence C++ start-up logs
    # absl prints the oneDNN notice at import regardless of TF_CPP_MIN_LOG_LEVEL.
    with native_stderr():
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    # Keep TF off any GPU: it only feeds torch here, and would otherwise reserve all GPU memory.
    tf.config.set_visible_devices([], "GPU")
    return tf


def _finish(tf: Any, image: Any, normalize: bool) -> Any:
    """float32 HWC in [0, 255] -> [0, 1] (or normalized) CHW."""
    image = image / 255.0
    if normalize:
        image = (image - tf.constant(MEAN)) / tf.constant(STD)
    return tf.transpose(image, [2, 0, 1])


def _train_map(tf: Any, data: Any) -> Any:
    shape = tf.io.extract_jpeg_shape(data)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), min_object_covered=0.0,
        aspect_ratio_range=RATIO, area_range=SCALE, max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, [CROP, CROP], method="bilinear", antialias=True)
    image = tf.image.random_flip_left_right(image)
    return _finish(tf, image, normalize=True)


def _eval_map(tf: Any, data: Any) -> Any:
    image = tf.io.decode_jpeg(data, channels=3)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    short = tf.minimum(h, w)
    # torchvision's Resize(256): shorter side 256, longer side truncated, not rounded.
    new_h = tf.where(h == short, RESIZE_SHORTER, RESIZE_SHORTER * h // short)
    new_w = tf.where(w == short, RESIZE_SHORTER, RESIZE_SHORTER * w // short)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    # torchvision's CenterCrop: offset round((size - crop) / 2).
    top = tf.cast(tf.round(tf.cast(new_h - CROP, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - CROP, tf.float32) / 2.0), tf.int32)
    image = tf.image.crop_to_bounding_box(image, top, left, CROP, CROP)
    return _finish(tf, image, normalize=True)


def _resize_map(tf: Any, data: Any) -> Any:
    image = tf.io.decode_jpeg(data, channels=3)
    image = tf.image.resize(image, [CROP, CROP], method="bilinear", antialias=True)
    return _finish(tf, image, normalize=False)


_MAPS = {"resize": _resize_map, "train": _train_map, "eval": _eval_map}


class TfBatches:
    """One pass of the tf.data pipeline per ``iter()``, converted to torch tensors."""

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        if spec.workload not in _MAPS:  # before TensorFlow is imported: nothing to pay for a refusal
            why = BACKENDS["tfdata"].skip_reason(spec.workload) or "no such workload"
            raise ValueError(f"backend tfdata does not run workload {spec.workload!r}: {why}")
        tf = _import_tf()
        tf.random.set_seed(spec.seed)
        self.spec = spec
        self.num_samples = len(data)
        ds = tf.data.Dataset.from_tensor_slices((list(data.files), list(data.labels)))
        if spec.train:
            ds = ds.shuffle(len(data), seed=spec.seed, reshuffle_each_iteration=True)
        transform = _MAPS[spec.workload]
        ds = ds.map(lambda path, label: (transform(tf, tf.io.read_file(path)), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(spec.batch_size).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        # The workers knob: size of this pipeline's own thread pool (AUTOTUNE tunes within it).
        options.threading.private_threadpool_size = spec.workers
        self.dataset = ds.with_options(options)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.spec.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels in self.dataset:
            # Tensor -> numpy is zero-copy for CPU tensors; torch then shares that buffer.
            yield torch.from_numpy(images.numpy()), torch.from_numpy(labels.numpy()).long()


def make_batches(data: ImageFolderData, spec: RunSpec) -> Iterable[Batch]:
    """tf.data batches of ``spec.workload`` as torch tensors on ``spec.device``.

    Availability (TensorFlow installed) is checked by the registry's ``Backend.unavailable_reason``.
    """
    return ToDevice(TfBatches(data, spec), spec)
