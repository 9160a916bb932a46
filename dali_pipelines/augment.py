"""RandAugment, TrivialAugmentWide and AutoAugment (ImageNet policy) as torchvision defines them,
run with DALI's automatic-augmentation operators on the graph's device.

``nvidia.dali.auto_aug`` supplies the operations (warp_affine, rotate, color ops, ...) and the
per-sample machinery that picks them (a conditional split of the batch, so each image only
pays for the operations drawn for it). Its stock suites differ from torchvision's (translation
ranges, solarize thresholds, enhance ranges; its ImageNet AutoAugment table is the "v0" policy of
TensorFlow's TPU EfficientNet code, not torchvision's), so the tables below restate
torchvision's ``_augmentation_space`` and ``AutoAugmentPolicy.IMAGENET`` with DALI's
augmentations. What remains different is listed in docs/augmentation.md#differences-that-remain.

The policies need a ``@pipeline_def(enable_conditionals=True)`` graph, uint8 HWC images of
``crop_size`` x ``crop_size``, and run before normalization, as torchvision applies them to
the PIL image before ``ToTensor``.
"""

from __future__ import annotations

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.auto_aug import augmentations as dali_aug
from nvidia.dali.auto_aug.auto_augment import apply_auto_augment
from nvidia.dali.auto_aug.core import Policy, augmentation
from nvidia.dali.auto_aug.core import _Augmentation as Augmentation
from nvidia.dali.auto_aug.rand_augment import apply_rand_augment
from nvidia.dali.auto_aug.trivial_augment import apply_trivial_augment
from nvidia.dali.pipeline import DataNode

from dali_pipelines.config import AUGMENTS, PipelineConfig

# Pixels uncovered by shear, translate and rotate are black, torchvision's fill=None (DALI's
# suites default to 128). Bilinear sampling, as torchvision's classification recipe passes
# (--interpolation bilinear); the transforms' own default is nearest.
WARP_ARGS = {"fill_value": 0, "interp_type": types.INTERP_LINEAR}

# AutoAugment's ImageNet table is written on 10 magnitude bins (torchvision's num_bins=10).
AUTOAUGMENT_BINS = 10


# DALI's own equalize and sharpness call the fn.experimental aliases, whose DeprecationWarning
# DALI raises under its own warnings.simplefilter("default"), past any filter a caller sets:
# these two are the same operations on the non-deprecated operators.
@augmentation
def equalize(data: DataNode, _: None) -> DataNode:
    """Histogram equalization per channel with OpenCV's lookup table (PIL builds another one)."""
    return fn.equalize(data)


@augmentation(mag_range=(0, 0.9), randomly_negate=True, mag_to_param=dali_aug.sharpness_kernel,
              param_device="auto")
def sharpness(data: DataNode, kernel: DataNode) -> DataNode:
    """PIL's ImageEnhance.Sharpness as one 3x3 filter (PIL leaves the 1-pixel border unfiltered)."""
    return fn.filter(data, kernel)


def _posterize_bits(top: int, span: int, bins: int) -> np.ndarray:
    """Bits kept per bin: ``top - round(bin / ((bins - 1) / span))``, torchvision's float32 formula."""
    steps = np.arange(bins, dtype=np.float32) / np.float32((bins - 1) / span)
    return (top - np.round(steps)).astype(np.float32)


def _whole_pixel_shifts(max_shift: float, bins: int) -> np.ndarray:
    """Shift per bin in whole pixels: torchvision truncates ``linspace(0, max_shift)`` with int()."""
    return np.trunc(np.linspace(0.0, max_shift, bins, dtype=np.float32))


def _enhance(op: Augmentation, top: float) -> Augmentation:
    """brightness / color / contrast with factor 1 +- linspace(0, top)."""
    return op.augmentation(mag_range=(0, top), randomly_negate=True,
                           mag_to_param=dali_aug.shift_enhance_range)


def randaugment_ops(crop_size: int, bins: int) -> list[Augmentation]:
    """torchvision ``RandAugment``'s 14 operations and their magnitude ranges on ``bins`` bins."""
    shifts = _whole_pixel_shifts(150.0 / 331.0 * crop_size, bins)  # relative to the image side
    return [
        dali_aug.identity,
        dali_aug.shear_x.augmentation(mag_range=(0, 0.3), randomly_negate=True),
        dali_aug.shear_y.augmentation(mag_range=(0, 0.3), randomly_negate=True),
        dali_aug.translate_x_no_shape.augmentation(mag_range=shifts, randomly_negate=True),
        dali_aug.translate_y_no_shape.augmentation(mag_range=shifts, randomly_negate=True),
        dali_aug.rotate.augmentation(mag_range=(0, 30), randomly_negate=True),
        _enhance(dali_aug.brightness, 0.9),
        _enhance(dali_aug.color, 0.9),
        _enhance(dali_aug.contrast, 0.9),
        sharpness,
        dali_aug.posterize.augmentation(mag_range=_posterize_bits(8, 4, bins)),
        dali_aug.solarize.augmentation(mag_range=(255, 0)),
        dali_aug.auto_contrast,
        equalize,
    ]


def trivialaugment_ops(bins: int) -> list[Augmentation]:
    """torchvision ``TrivialAugmentWide``'s 14 operations ("wide" ranges) on ``bins`` bins."""
    shifts = _whole_pixel_shifts(32.0, bins)  # 32 pixels at any image size, as torchvision
    return [
        dali_aug.identity,
        dali_aug.shear_x.augmentation(mag_range=(0, 0.99), randomly_negate=True),
        dali_aug.shear_y.augmentation(mag_range=(0, 0.99), randomly_negate=True),
        dali_aug.translate_x_no_shape.augmentation(mag_range=shifts, randomly_negate=True),
        dali_aug.translate_y_no_shape.augmentation(mag_range=shifts, randomly_negate=True),
        dali_aug.rotate.augmentation(mag_range=(0, 135), randomly_negate=True),
        _enhance(dali_aug.brightness, 0.99),
        _enhance(dali_aug.color, 0.99),
        _enhance(dali_aug.contrast, 0.99),
        sharpness.augmentation(mag_range=(0, 0.99)),
        dali_aug.posterize.augmentation(mag_range=_posterize_bits(8, 6, bins)),
        dali_aug.solarize.augmentation(mag_range=(255, 0)),
        dali_aug.auto_contrast,
        equalize,
    ]


def autoaugment_imagenet_policy() -> Policy:
    """torchvision ``AutoAugment(AutoAugmentPolicy.IMAGENET)``: 25 sub-policies of (op, probability,
    magnitude bin) on 10 bins, in torchvision's order."""
    shear_x = dali_aug.shear_x.augmentation(mag_range=(0, 0.3), randomly_negate=True)
    rotate = dali_aug.rotate.augmentation(mag_range=(0, 30), randomly_negate=True)
    color = _enhance(dali_aug.color, 0.9)
    contrast = _enhance(dali_aug.contrast, 0.9)
    sharp = sharpness.augmentation(mag_range=(0, 0.9))
    poster = dali_aug.posterize.augmentation(mag_range=_posterize_bits(8, 4, AUTOAUGMENT_BINS))
    solarize = dali_aug.solarize.augmentation(mag_range=(255, 0))
    invert, autocontrast = dali_aug.invert, dali_aug.auto_contrast
    return Policy(
        name="torchvision-imagenet",
        num_magnitude_bins=AUTOAUGMENT_BINS,
        sub_policies=[
            [(poster, 0.4, 8), (rotate, 0.6, 9)],
            [(solarize, 0.6, 5), (autocontrast, 0.6, None)],
            [(equalize, 0.8, None), (equalize, 0.6, None)],
            [(poster, 0.6, 7), (poster, 0.6, 6)],
            [(equalize, 0.4, None), (solarize, 0.2, 4)],
            [(equalize, 0.4, None), (rotate, 0.8, 8)],
            [(solarize, 0.6, 3), (equalize, 0.6, None)],
            [(poster, 0.8, 5), (equalize, 1.0, None)],
            [(rotate, 0.2, 3), (solarize, 0.6, 8)],
            [(equalize, 0.6, None), (poster, 0.4, 6)],
            [(rotate, 0.8, 8), (color, 0.4, 0)],
            [(rotate, 0.4, 9), (equalize, 0.6, None)],
            # torchvision: (Equalize, 0.0), (Equalize, 0.8); a step that never runs is left out.
            [(equalize, 0.8, None)],
            [(invert, 0.6, None), (equalize, 1.0, None)],
            [(color, 0.6, 4), (contrast, 1.0, 8)],
            [(rotate, 0.8, 8), (color, 1.0, 2)],
            [(color, 0.8, 8), (solarize, 0.8, 7)],
            [(sharp, 0.4, 7), (invert, 0.6, None)],
            [(shear_x, 0.6, 5), (equalize, 1.0, None)],
            [(color, 0.4, 0), (equalize, 0.6, None)],
            [(equalize, 0.4, None), (solarize, 0.2, 4)],
            [(solarize, 0.6, 5), (autocontrast, 0.6, None)],
            [(invert, 0.6, None), (equalize, 1.0, None)],
            [(color, 0.6, 4), (contrast, 1.0, 8)],
            [(equalize, 0.8, None), (equalize, 0.6, None)],
        ],
    )


def augment_images(images: DataNode, cfg: PipelineConfig) -> DataNode:
    """``cfg.augment``'s policy on uint8 HWC images of ``cfg.crop_size``² ("basic": unchanged).

    Call it inside a ``@pipeline_def(enable_conditionals=True)`` graph. Its random draws
    (operations, signs, magnitudes, probabilities) come from the pipeline's seed and are part
    of a checkpoint, so a resumed loader repeats them.
    """
    bins = cfg.augment_magnitude_bins
    if cfg.augment == "basic":
        return images
    if cfg.augment == "randaugment":
        ops = randaugment_ops(cfg.crop_size, bins)
        return apply_rand_augment(ops, images, cfg.augment_ops, cfg.augment_magnitude,
                                  num_magnitude_bins=bins, **WARP_ARGS)
    if cfg.augment == "trivialaugment":
        return apply_trivial_augment(trivialaugment_ops(bins), images, num_magnitude_bins=bins, **WARP_ARGS)
    if cfg.augment == "autoaugment":
        return apply_auto_augment(autoaugment_imagenet_policy(), images, **WARP_ARGS)
    raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}; got {cfg.augment!r}")
