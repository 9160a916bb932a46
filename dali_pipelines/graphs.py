"""DALI graphs for training and evaluation; one graph per purpose, the device a parameter.

``device="gpu"`` decodes with nvJPEG (``"mixed"``: Huffman decoding on CPU threads or the
A100/H100 hardware decoder, IDCT on the GPU) and runs every later operator on the GPU.
``device="cpu"`` runs the same operators with the same parameters on CPU threads, so the
CPU graph is the GPU graph's test double and a fast CPU loader of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import DataNode, Pipeline

from dali_pipelines.augment import augment_images
from dali_pipelines.config import PipelineConfig
from dali_pipelines.erase import random_erase
from dali_pipelines.readers import read_encoded
from dali_pipelines.sources import DataSource

DALI_DTYPES = {"float32": types.FLOAT, "float16": types.FLOAT16}
DALI_LAYOUTS = {"NCHW": "CHW", "NHWC": "HWC"}

# A ``@pipeline_def`` function of (source, cfg) -> (images, labels), called with pipeline kwargs.
Graph = Callable[..., Pipeline]


def decoder_args(cfg: PipelineConfig, *, train: bool = False) -> dict[str, Any]:
    """Decoder placement, orientation, chroma upsampling and nvJPEG memory hints.

    ``train`` picks the train or eval setting of fancy upsampling (see ``PipelineConfig``);
    the hints only exist for "mixed".
    """
    args: dict[str, Any] = {
        "device": "mixed" if cfg.device == "gpu" else "cpu",
        "output_type": types.RGB,  # grayscale and CMYK JPEGs come out as 3-channel RGB
        "adjust_orientation": cfg.apply_exif_orientation,
        "jpeg_fancy_upsampling": cfg.jpeg_fancy_upsampling_train if train else cfg.jpeg_fancy_upsampling_eval,
    }
    if cfg.device == "gpu":
        args["hw_decoder_load"] = cfg.hw_decoder_load
        if cfg.decoder_device_memory_padding:
            args["device_memory_padding"] = cfg.decoder_device_memory_padding
        if cfg.decoder_host_memory_padding:
            args["host_memory_padding"] = cfg.decoder_host_memory_padding
    return args


def _normalize(images: DataNode, cfg: PipelineConfig, mirror: DataNode | int) -> DataNode:
    """Optional flip, (x/255 - mean)/std, layout and dtype, in one pass over the pixels."""
    return fn.crop_mirror_normalize(
        images,
        mirror=mirror,
        mean=[m * 255.0 for m in cfg.mean],
        std=[s * 255.0 for s in cfg.std],
        dtype=DALI_DTYPES[cfg.dtype],
        output_layout=DALI_LAYOUTS[cfg.layout],
    )


def resize_square(images: DataNode, size: int) -> DataNode:
    """Resize to size x size (aspect not kept), antialiased like PIL's bilinear."""
    return fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_LINEAR, antialias=True)


def labels_out(labels: DataNode, cfg: PipelineConfig) -> DataNode:
    # Labels travel with the images so the training step needs no host->device copy.
    return labels.gpu() if cfg.device == "gpu" else labels


# The augmentation policies split each batch per sample (``if`` on DataNodes), which needs
# enable_conditionals; with cfg.augment == "basic" the graph holds the same operators as without.
@pipeline_def(enable_checkpointing=True, enable_conditionals=True)
def train_graph(source: DataSource, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """Read -> ``train_images``."""
    jpegs, labels = read_encoded(source, cfg, train=True)
    return train_images(jpegs, cfg), labels_out(labels, cfg)


def train_images(jpegs: DataNode, cfg: PipelineConfig) -> DataNode:
    """Encoded JPEGs -> ROI decode of a random-resized crop -> resize -> random flip -> cfg.augment's
    policy -> normalize -> random erasing (cfg.random_erase > 0): the train graph after its reader
    (any source of encoded bytes can feed it)."""
    # Region-of-interest decode: only the crop window is decoded (less IDCT work). The window
    # follows RandomResizedCrop's rules (area fraction and log-uniform aspect ratio, 10 tries,
    # as torchvision); docs/parity.md#train-crops-vs-torchvisions-randomresizedcrop lists where
    # DALI's generator differs.
    images = fn.decoders.image_random_crop(
        jpegs,
        random_area=list(cfg.random_area),
        random_aspect_ratio=list(cfg.random_aspect_ratio),
        num_attempts=10,
        **decoder_args(cfg, train=True),
    )
    images = resize_square(images, cfg.crop_size)
    mirror = fn.random.coin_flip(probability=0.5)
    if cfg.augment != "basic":
        # torchvision flips before the policy. Most operations commute with a flip (colour ops,
        # rotation and translation by a random sign), but a shear along y keeps the left column
        # fixed (origin at the top-left corner) and would keep the right one after a later flip.
        # So the flip moves out of crop_mirror_normalize: one more pass over uint8 pixels.
        images = augment_images(fn.flip(images, horizontal=mirror), cfg)
        mirror = 0
    images = _normalize(images, cfg, mirror)
    if cfg.random_erase > 0:
        images = random_erase(images, size=cfg.crop_size, probability=cfg.random_erase,
                              scale=cfg.random_erase_scale, ratio=cfg.random_erase_ratio)
    return images


@pipeline_def(enable_checkpointing=True)
def eval_graph(source: DataSource, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """Read -> ``eval_images``."""
    jpegs, labels = read_encoded(source, cfg, train=False)
    return eval_images(jpegs, cfg), labels_out(labels, cfg)


def eval_images(jpegs: DataNode, cfg: PipelineConfig) -> DataNode:
    """Encoded JPEGs -> decode -> torchvision's Resize(resize_size) + CenterCrop(crop_size) -> normalize:
    the eval graph after its reader."""
    images = fn.decoders.image(jpegs, **decoder_args(cfg))
    roi_start, roi_end = center_crop_window(jpegs, cfg)
    # Resizing just the kept window to crop x crop samples the same pixel centres with the same
    # antialiasing filter as resize-then-crop, and computes only the crop_size² output pixels.
    images = fn.resize(
        images,
        size=[cfg.crop_size, cfg.crop_size],
        roi_start=roi_start,
        roi_end=roi_end,
        interp_type=types.INTERP_LINEAR,
        antialias=True,
    )
    return _normalize(images, cfg, mirror=0)


def center_crop_window(jpegs: DataNode, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """Input-pixel window (y, x) that torchvision's ``Resize(resize_size)`` + ``CenterCrop(crop_size)`` keeps.

    torchvision sets the shorter side to ``resize_size`` and the longer one to
    ``int(resize_size * long / short)`` (truncated), then crops at ``int(round(excess / 2))``
    (Python rounds halves to even). DALI's ``resize_shorter`` rounds the longer side and its
    centred crop can start on a half pixel: a window up to a pixel off torchvision's.
    The image size comes from the header: a parse, no decode.
    """
    shape = fn.peek_image_shape(jpegs, dtype=types.INT64, adjust_orientation=cfg.apply_exif_orientation)
    height, width = shape[0], shape[1]
    shorter = dmath.min(height, width)
    top, bottom = _axis_window(height, shorter, cfg)
    left, right = _axis_window(width, shorter, cfg)
    return fn.stack(top, left), fn.stack(bottom, right)


def _axis_window(size: DataNode, shorter: DataNode, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """[start, end) in input pixels of the crop along one axis, exactly as torchvision computes it."""
    resized = (cfg.resize_size * size) // shorter  # == int(resize * size / shorter) for these sizes
    excess = resized - cfg.crop_size  # >= 0: resize_size >= crop_size is validated
    half = excess // 2
    offset = half + (excess % 2) * (half % 2)  # round(excess / 2), ties to even
    scale = fn.cast(size, dtype=types.FLOAT) / fn.cast(resized, dtype=types.FLOAT)
    start = fn.cast(offset, dtype=types.FLOAT) * scale
    return start, start + float(cfg.crop_size) * scale


def build_pipeline(source: DataSource, cfg: PipelineConfig, *, train: bool,
                   checkpoint: str | None = None, graph: Graph | None = None) -> Pipeline:
    """Instantiate (not yet build) a graph for ``cfg``'s device and shard.

    ``graph`` defaults to ``train_graph`` or ``eval_graph`` by ``train``; any other
    ``@pipeline_def(enable_checkpointing=True)`` function taking ``(source, cfg)`` and
    returning ``(images, labels)`` works too (the benchmarks' graphs do; one that calls
    ``augment_images`` also needs ``enable_conditionals=True``). The reader still follows
    ``train`` (shuffled epochs or file order). ``checkpoint`` is a string from
    ``DaliLoader.state()``; the pipeline then resumes at the exact reader position and
    random-number state it was saved at.
    """
    if cfg.auto:
        raise ValueError("num_threads='auto' is resolved when a loader is made: use make_loader, or "
                         "dali_pipelines.tune.resolve_auto(source, cfg, train=...) before build_pipeline")
    if graph is None:
        graph = train_graph if train else eval_graph
    return graph(
        source,
        cfg,
        batch_size=cfg.batch_size,
        num_threads=cfg.num_threads,
        device_id=cfg.device_id if cfg.device == "gpu" else None,
        # Augmentation randomness differs per shard; the reader's shuffle seed does not.
        seed=cfg.seed + cfg.shard_id,
        prefetch_queue_depth=cfg.prefetch_queue_depth,
        checkpoint=checkpoint,
    )
