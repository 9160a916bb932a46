"""Pipeline settings: one frozen dataclass, each field declaring the values it accepts, all
checked once at construction."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dali_pipelines._util.fields import (
    boolean,
    check_fields,
    declared,
    integer_in,
    number_in,
    one_of,
    or_word,
    ordered_pair,
    rgb_in,
)

# ImageNet statistics on the [0, 1] scale; the graphs multiply by 255 for uint8 input.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

DEVICES = ("gpu", "cpu")
AUTO = "auto"  # num_threads="auto": resolved from a saved tuning when a loader is made (docs/tune.md)
DTYPES = ("float32", "float16")
LAYOUTS = ("NCHW", "NHWC")
# Train-time policies after crop, resize and flip (dali_pipelines.augment; docs/augmentation.md).
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
# threads; more than 8 rarely helps one pipeline. "gpu": they only parse headers, Huffman-decode
# what the hardware decoder does not take and launch kernels, and the threads left free serve
# the training loop (why 4: docs/gpu.md#threads).
_MAX_DEFAULT_THREADS = {"cpu": 8, "gpu": 4}


def default_num_threads(device: str = "cpu") -> int:
    """CPU threads per pipeline for ``device``: all cores up to 8 ("cpu") or up to 4 ("gpu")."""
    problem = one_of(DEVICES)(device, None)
    if problem:
        raise ValueError(f"device {problem}")
    return max(1, min(_MAX_DEFAULT_THREADS[device], os.cpu_count() or 1))


def default_resize_size(crop_size: int) -> int:
    """The eval resize for a crop: torchvision's ImageNet ratio, 256 for 224 (python -m train's rule)."""
    return round(crop_size * 256 / 224)


def _magnitude_bin(value: Any, cfg: PipelineConfig) -> str | None:
    """A randaugment magnitude: a bin index, so its range follows ``augment_magnitude_bins``."""
    bins = cfg.augment_magnitude_bins
    problem = integer_in(0, bins - 1)(value, cfg)
    return f"(a bin of augment_magnitude_bins={bins}) {problem}" if problem else None


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a DALI graph needs, checked once so a bad value fails before DALI starts.

    Each field declares the values it accepts (``declared(default, check)``); a range that
    depends on another field follows that field.
    """

    batch_size: int = declared(64, integer_in(1, 65536))
    # None: default_num_threads(device), resolved at construction (replace() keeps the number).
    # "auto": the threads, prefetch depth and hardware-decoder share of a saved tuning of this
    # loader's data and workload on this machine, else the defaults; make_loader resolves it
    # (dali_pipelines.tune.resolve_auto), and a graph is never built with it.
    num_threads: int | str | None = declared(None, or_word(AUTO, integer_in(1, 1024)))
    # "gpu": nvJPEG ("mixed") + GPU ops; "cpu": the same graph on CPU threads.
    device: str = declared("gpu", one_of(DEVICES))
    device_id: int = declared(0, integer_in(0, 1023))  # CUDA device for "gpu"; unused on "cpu"
    crop_size: int = declared(224, integer_in(8, 4096))  # side of the square both graphs emit
    # Eval: shorter side before the center crop. Not given (None): default_resize_size(crop_size),
    # resolved at construction, so the attribute is always an int; replace(crop_size=...) derives it
    # again unless it was given.
    resize_size: int = declared(None, integer_in(lambda cfg: cfg.crop_size, 8192))
    # Train crop: area fraction and aspect range, as RandomResizedCrop's scale and ratio.
    random_area: tuple[float, float] = declared((0.08, 1.0), ordered_pair(0.0, 1.0))
    random_aspect_ratio: tuple[float, float] = declared((3 / 4, 4 / 3), ordered_pair(0.0, 100.0))
    mean: tuple[float, float, float] = declared(IMAGENET_MEAN, rgb_in(0.0, 1.0))
    std: tuple[float, float, float] = declared(IMAGENET_STD, rgb_in(1e-6, 1.0))
    seed: int = declared(0, integer_in(0, 2**31 - 1))  # python -m train's default too
    num_shards: int = declared(1, integer_in(1, 65536))
    shard_id: int = declared(0, integer_in(0, lambda cfg: cfg.num_shards - 1))
    # Batches DALI prepares ahead of the consumer (DALI's default depth).
    prefetch_queue_depth: int = declared(2, integer_in(1, 32))
    # float16 halves the bytes per batch; float32 is the default because the smaller batch did
    # not make training faster (docs/gpu.md#output-dtype).
    dtype: str = declared("float32", one_of(DTYPES))
    layout: str = declared("NCHW", one_of(LAYOUTS))
    # Fraction of images nvJPEG sends to the hardware JPEG decoder (A100/H100) when there is one;
    # the rest go to CUDA cores, which the training step needs (why 1.0:
    # docs/gpu.md#hardware-decoder). Ignored without such a decoder.
    hw_decoder_load: float = declared(1.0, number_in(0, 1))
    # nvJPEG scratch buffers grown up front so the first large images don't reallocate
    # (a reallocation is a device sync). 0 keeps DALI's defaults.
    decoder_device_memory_padding: int = declared(64 * _MIB, integer_in(0, 2**34))
    decoder_host_memory_padding: int = declared(32 * _MIB, integer_in(0, 2**34))
    # libjpeg's "fancy" (smooth) chroma upsampling of 4:2:0 / 4:2:2 JPEGs, as PIL does it, on the
    # GPU decoder; DALI's CPU decoder always upsamples this way, so these only change "gpu".
    # Train: off, because nvJPEG 12 (nvImageCodec 0.9) cannot decode a crop window with it and
    # sends every such image to libjpeg-turbo on the CPU threads, while on random crops it only
    # changes chroma edges. Eval: on, so a full decode matches torchvision's; eval reads few
    # images per epoch (the costs of both: docs/gpu.md#fancy-upsampling).
    jpeg_fancy_upsampling_train: bool = declared(False, boolean)
    jpeg_fancy_upsampling_eval: bool = declared(True, boolean)
    # EXIF orientation: False reads pixels as stored, as torchvision's ImageFolder (PIL's
    # Image.open().convert("RGB")) does; True rotates/flips them upright first.
    apply_exif_orientation: bool = declared(False, boolean)
    # Train graph only, after crop, resize and flip, before normalization, as torchvision defines
    # each policy: "basic" (no more than crop and flip), "randaugment" (RandAugment), "trivialaugment"
    # (TrivialAugmentWide), "autoaugment" (AutoAugment's ImageNet policy; takes none of the knobs).
    augment: str = declared("basic", one_of(AUGMENTS))
    augment_ops: int = declared(2, integer_in(1, 16))  # randaugment: operations per image (num_ops)
    # randaugment, trivialaugment: bins of each op's range.
    augment_magnitude_bins: int = declared(31, integer_in(2, 256))
    augment_magnitude: int = declared(9, _magnitude_bin)  # randaugment: magnitude bin of every op
    # Train graph only, after normalization, as torchvision's RandomErasing(p, scale, ratio, value=0)
    # in its classification recipe: with this probability a box of each image is set to 0.
    random_erase: float = declared(0.0, number_in(0, 1))
    random_erase_scale: tuple[float, float] = declared((0.02, 0.33), ordered_pair(0.0, 1.0))  # area share
    random_erase_ratio: tuple[float, float] = declared((0.3, 3.3), ordered_pair(0.0, 100.0))  # aspect h/w

    def __post_init__(self) -> None:
        if self.num_threads is None:  # frozen: the resolved default is set once, here
            object.__setattr__(self, "num_threads", default_num_threads(self.device))
        # Not a field (no part of to_dict or ==): whether resize_size follows crop_size.
        object.__setattr__(self, "_resize_follows_crop", self.resize_size is None)
        if self.resize_size is None and isinstance(self.crop_size, int):
            object.__setattr__(self, "resize_size", default_resize_size(self.crop_size))
        check_fields(self, lambda name, problem: ValueError(f"{name} {problem}"))

    @property
    def auto(self) -> bool:
        """Whether ``num_threads`` is "auto": to be resolved (``resolve_auto``) before a graph is built."""
        return self.num_threads == AUTO

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with some fields changed, validated again; a resize_size that followed crop_size
        follows the new one."""
        if "crop_size" in changes and "resize_size" not in changes and self.__dict__["_resize_follows_crop"]:
            changes["resize_size"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """One line per setting, for logs and run records."""
        width = max(len(k) for k in self.to_dict())
        return "\n".join(f"  {k:<{width}} = {v}" for k, v in self.to_dict().items())
