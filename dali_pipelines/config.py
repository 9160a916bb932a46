"""Pipeline settings: one frozen dataclass, validated once at construction."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ImageNet statistics on the [0, 1] scale; the graphs multiply by 255 for uint8 input.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

DEVICES = ("gpu", "cpu")
DTYPES = ("float32", "float16")
LAYOUTS = ("NCHW", "NHWC")
# Train-time policies after crop, resize and flip (dali_pipelines.augment; README "Augmentation").
AUGMENTS = ("basic", "randaugment", "trivialaugment", "autoaugment")

_MIB = 1024 * 1024


def default_cache_dir() -> Path:
    """Where results that outlive a run are cached (file verification): $DALI_PIPELINES_CACHE,
    else $XDG_CACHE_HOME/dali_pipelines, else ~/.cache/dali_pipelines."""
    explicit = os.environ.get("DALI_PIPELINES_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dali_pipelines"


# CPU threads per pipeline, by device. "cpu": every image is decoded and resized on these
# threads, so up to 8 (more rarely helps one pipeline). "gpu": the threads only parse headers,
# run the Huffman stage of images the hardware decoder does not take, and launch kernels; on an
# H100 with 16 cores feeding GoogLeNet (bf16, batch 256; hw_decoder_load 1.0, training step on a
# high-priority CUDA stream) NVIDIA's example train graph kept the model at 0.94 of its
# synthetic-data speed with 4 threads, 0.91-0.92 with 8 or 16 and 0.82 with 2 (threads left
# free serve the training loop).
_MAX_DEFAULT_THREADS = {"cpu": 8, "gpu": 4}


def default_num_threads(device: str = "cpu") -> int:
    """CPU threads per pipeline for ``device``: all cores up to 8 ("cpu") or up to 4 ("gpu")."""
    _check_choice("device", device, DEVICES)
    return max(1, min(_MAX_DEFAULT_THREADS[device], os.cpu_count() or 1))


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a DALI graph needs, checked once so a bad value fails before DALI starts."""

    batch_size: int = 64
    # None: default_num_threads(device), resolved at construction (replace() keeps the number).
    num_threads: int | None = None
    device: str = "gpu"  # "gpu": nvJPEG ("mixed") + GPU ops; "cpu": same graph on CPU threads
    device_id: int = 0  # CUDA device for device="gpu"; ignored (None) for "cpu"
    crop_size: int = 224  # side of the square the train and eval graphs emit
    resize_size: int = 256  # eval: shorter side before the center crop
    random_area: tuple[float, float] = (0.08, 1.0)  # train crop area fraction
    random_aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # train crop aspect range
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    seed: int = 42
    shard_id: int = 0
    num_shards: int = 1
    prefetch_queue_depth: int = 2  # batches DALI prepares ahead of the consumer (GPU: not yet swept)
    # float16 halves the bytes per batch but did not speed GoogLeNet up on an H100 (0.91 of its
    # synthetic-data speed against 0.92 with float32), so float32 stays the default.
    dtype: str = "float32"
    layout: str = "NCHW"
    # Fraction of images nvJPEG sends to the hardware JPEG decoder (A100/H100) when present; the
    # rest go to CUDA cores, which the training step needs. On an H100 (batch 256, 8 threads,
    # fancy upsampling off) the eval-style graph ran at 12.6k img/s with 1.0 against 10.8k with
    # DALI's default 0.65, and NVIDIA's example train graph at 15.7-17.7k with 1.0 (12-16
    # threads) against 14.2k with 0.65 (8 threads); feeding GoogLeNet with 4 threads, 1.0 kept
    # the model at 0.94 of its synthetic-data speed and 0.0 at 0.58. Ignored without such a decoder.
    hw_decoder_load: float = 1.0
    # nvJPEG scratch buffers grown up front so the first large images don't reallocate
    # (a reallocation is a device sync). 0 keeps DALI's defaults. Not yet swept on a GPU.
    decoder_device_memory_padding: int = 64 * _MIB
    decoder_host_memory_padding: int = 32 * _MIB
    # libjpeg's "fancy" (smooth) chroma upsampling of 4:2:0 / 4:2:2 JPEGs, as PIL does it, on the
    # GPU decoder; DALI's CPU decoder always upsamples this way, so these only change "gpu".
    # Train: off. nvImageCodec 0.9 / nvJPEG 12 cannot decode a region of interest with it and
    # hands every such image to libjpeg-turbo on the CPU threads: on an H100 NVIDIA's example
    # train graph ran at 5.7k img/s with it against 14.2-17.7k without. On random crops it only
    # changes chroma edges (about 0.004 normalized units on the sample photos). Eval: on, so a
    # full decode matches torchvision's; it costs throughput there too (H100, eval-style graph:
    # 7.1k img/s on against 10.8k off), but eval sees few images per epoch.
    jpeg_fancy_upsampling_train: bool = False
    jpeg_fancy_upsampling_eval: bool = True
    # EXIF orientation: False reads pixels as stored, as torchvision's ImageFolder (PIL's
    # Image.open().convert("RGB")) does; True rotates/flips them upright first.
    apply_exif_orientation: bool = False
    # Train graph only, after crop, resize and flip, before normalization, as torchvision defines
    # each policy: "basic" (no more than crop and flip), "randaugment" (RandAugment), "trivialaugment"
    # (TrivialAugmentWide), "autoaugment" (AutoAugment's ImageNet policy; takes none of the knobs).
    augment: str = "basic"
    augment_ops: int = 2  # randaugment: operations per image (torchvision's num_ops)
    augment_magnitude: int = 9  # randaugment: magnitude bin, 0 .. augment_magnitude_bins - 1
    augment_magnitude_bins: int = 31  # randaugment, trivialaugment: bins of each op's range

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, 1, 65536)
        _check_choice("device", self.device, DEVICES)
        if self.num_threads is None:  # frozen: the resolved default is set once, here
            object.__setattr__(self, "num_threads", default_num_threads(self.device))
        _check_int("num_threads", self.num_threads, 1, 1024)
        _check_int("device_id", self.device_id, 0, 1023)
        _check_int("crop_size", self.crop_size, 8, 4096)
        _check_int("resize_size", self.resize_size, self.crop_size, 8192)
        _check_range_pair("random_area", self.random_area, 0.0, 1.0)
        _check_range_pair("random_aspect_ratio", self.random_aspect_ratio, 0.0, 100.0)
        _check_triple("mean", self.mean, 0.0, 1.0)
        _check_triple("std", self.std, 1e-6, 1.0)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("num_shards", self.num_shards, 1, 65536)
        _check_int("shard_id", self.shard_id, 0, self.num_shards - 1)
        _check_int("prefetch_queue_depth", self.prefetch_queue_depth, 1, 32)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("layout", self.layout, LAYOUTS)
        if not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError(f"hw_decoder_load must be in [0, 1], got {self.hw_decoder_load!r}")
        _check_int("decoder_device_memory_padding", self.decoder_device_memory_padding, 0, 2**34)
        _check_int("decoder_host_memory_padding", self.decoder_host_memory_padding, 0, 2**34)
        _check_bool("jpeg_fancy_upsampling_train", self.jpeg_fancy_upsampling_train)
        _check_bool("jpeg_fancy_upsampling_eval", self.jpeg_fancy_upsampling_eval)
        _check_bool("apply_exif_orientation", self.apply_exif_orientation)
        _check_choice("augment", self.augment, AUGMENTS)
        _check_int("augment_ops", self.augment_ops, 1, 16)
        _check_int("augment_magnitude_bins", self.augment_magnitude_bins, 2, 256)
        bins = self.augment_magnitude_bins
        _check_int(f"augment_magnitude (a bin of augment_magnitude_bins={bins})", self.augment_magnitude,
                   0, bins - 1)

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """One line per setting, for logs and run records."""
        width = max(len(k) for k in self.to_dict())
        return "\n".join(f"  {k:<{width}} = {v}" for k, v in self.to_dict().items())


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_range_pair(name: str, value: object, low: float, high: float) -> None:
    if not (isinstance(value, tuple | list) and len(value) == 2 and low < value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be (min, max) with {low} < min <= max <= {high}, got {value!r}")


def _check_triple(name: str, value: object, low: float, high: float) -> None:
    if not (isinstance(value, tuple | list) and len(value) == 3
            and all(low <= float(v) <= high for v in value)):
        raise ValueError(f"{name} must be three values (R, G, B) in [{low}, {high}], got {value!r}")
