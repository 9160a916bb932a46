"""The augmentation policies (``PipelineConfig.augment``) on real JPEGs.

Against torchvision: each operation of each policy, at fixed magnitude bins and both signs, on
the same uint8 images as torchvision's own ``_apply_op`` (bilinear, fill 0, as its reference
recipe); the operation sets and the AutoAugment table. In the train graph: a policy changes
images and keeps shape, dtype, layout and range; a seed repeats the batches and another seed
changes them; a loader restored from ``state()`` repeats them; eval ignores the policy.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.auto_aug.core import signed_bin
from PIL import Image
from torchvision.transforms import (
    AutoAugment,
    AutoAugmentPolicy,
    InterpolationMode,
    RandAugment,
    TrivialAugmentWide,
)
from torchvision.transforms.autoaugment import _apply_op  # the operations all three policies share

from dali_pipelines import PipelineConfig, make_loader, scan_image_folder
from dali_pipelines.augment import (
    AUTOAUGMENT_BINS,
    WARP_ARGS,
    autoaugment_imagenet_policy,
    randaugment_ops,
    trivialaugment_ops,
)
from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD

POLICIES = ("randaugment", "trivialaugment", "autoaugment")
LOW = min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
HIGH = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))

# DALI's augmentation names -> torchvision's operation names.
TV_NAMES = {
    "identity": "Identity", "shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX",
    "translate_y": "TranslateY", "rotate": "Rotate", "brightness": "Brightness", "color": "Color",
    "contrast": "Contrast", "sharpness": "Sharpness", "posterize": "Posterize", "solarize": "Solarize",
    "auto_contrast": "AutoContrast", "equalize": "Equalize", "invert": "Invert",
}
# Largest mean |DALI - torchvision| per image, in gray levels. Measured on these photos at 96 px
# (CPU, worst bin and sign): identity, translate, posterize, solarize, invert exact; shear and
# rotate 0.6-0.9 (sub-pixel sampling); colour ops 0.4-0.6 (PIL computes in integers); equalize
# 5.7 (DALI builds OpenCV's lookup table, PIL another).
TOLERANCE = {"Equalize": 9.0, "ShearX": 1.5, "ShearY": 1.5, "Rotate": 1.5, "Brightness": 1.0,
             "Color": 1.0, "Contrast": 1.0, "Sharpness": 1.0, "AutoContrast": 1.0}
OP_SIZE = 96


def _cpu(**overrides: object) -> PipelineConfig:
    return PipelineConfig(**{"batch_size": 8, "device": "cpu", "num_threads": 2, "crop_size": 64,
                             "resize_size": 72, **overrides})


def _batches(root: Path, cfg: PipelineConfig, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` train batches of a fresh loader, concatenated."""
    stream = iter(make_loader(scan_image_folder(root), cfg, train=True))
    batches = [next(stream) for _ in range(count)]
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


@functools.cache
def _basic(root: Path, dtype: str, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _batches(root, _cpu(dtype=dtype, layout=layout))


# -- the operations against torchvision ----------------------------------------------------------

@functools.cache
def _photos(root: Path) -> tuple[np.ndarray, ...]:
    """Eight of the sample photos as uint8 HWC arrays of OP_SIZE x OP_SIZE."""
    files = scan_image_folder(root).files[::9][:8]
    size = (OP_SIZE, OP_SIZE)
    return tuple(np.asarray(Image.open(f).convert("RGB").resize(size, Image.BILINEAR)) for f in files)


def _op_cases(policy: str) -> tuple[list, int, dict, list[int]]:
    """(DALI augmentations, bins, torchvision's magnitude table, bins to try) for a policy."""
    size = (OP_SIZE, OP_SIZE)
    if policy == "randaugment":
        return randaugment_ops(OP_SIZE, 31), 31, RandAugment()._augmentation_space(31, size), [9, 30]
    if policy == "trivialaugment":
        return trivialaugment_ops(31), 31, TrivialAugmentWide()._augmentation_space(31), [5, 30]
    augs = list(autoaugment_imagenet_policy().augmentations.values())
    return augs, AUTOAUGMENT_BINS, AutoAugment()._augmentation_space(AUTOAUGMENT_BINS, size), [5, 9]


def _run_ops(root: Path, policy: str, device: str) -> dict[tuple[str, int, int], list[np.ndarray]]:
    """Every operation of ``policy`` at each tried bin and sign, in one DALI pipeline."""
    augs, bins, _, tried = _op_cases(policy)
    keys = [(aug.name, b, sign) for aug in augs for b in tried
            for sign in ((0, 1) if aug.randomly_negate else (0,))]
    photos = list(_photos(root))

    @pipeline_def(batch_size=len(photos), num_threads=2, device_id=0 if device == "gpu" else None, seed=1)
    def ops_graph() -> tuple:
        images = fn.external_source(source=lambda: photos, batch=True, layout="HWC")
        images = images.gpu() if device == "gpu" else images
        by_name = {aug.name: aug for aug in augs}
        outputs = []
        for name, b, sign in keys:
            magnitude = b
            if by_name[name].randomly_negate:  # the sign fixed: 0 keeps the magnitude, 1 negates it
                fixed_sign = fn.random.uniform(values=[sign, sign], dtype=types.INT32)
                magnitude = signed_bin(b, random_sign=fixed_sign)
            aug = by_name[name]
            outputs.append(aug(images, magnitude_bin=magnitude, num_magnitude_bins=bins, **WARP_ARGS))
        return tuple(outputs)

    pipe = ops_graph()
    pipe.build()
    outputs = [out.as_cpu() if device == "gpu" else out for out in pipe.run()]
    return {key: [np.asarray(t) for t in out] for key, out in zip(keys, outputs, strict=True)}


def _torchvision(root: Path, name: str, magnitude: float) -> list[np.ndarray]:
    bilinear = InterpolationMode.BILINEAR
    return [np.asarray(_apply_op(Image.fromarray(p), name, magnitude, interpolation=bilinear, fill=None))
            for p in _photos(root)]


def _mean_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    pairs = zip(a, b, strict=True)
    return float(np.mean([np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in pairs]))


def _check_ops_match_torchvision(root: Path, policy: str, device: str) -> None:
    outputs = _run_ops(root, policy, device)
    _, _, space, _ = _op_cases(policy)
    best_sign = {}
    for (name, b, sign), got in outputs.items():
        tv_name = TV_NAMES[name]
        magnitudes, signed = space[tv_name]
        magnitude = float(magnitudes[b]) if magnitudes.ndim > 0 else 0.0
        errors = {s: _mean_abs(got, _torchvision(root, tv_name, s * magnitude))
                  for s in ((1, -1) if signed else (1,))}
        best_sign[name, b, sign] = min(errors, key=errors.get)
        exact = 0.0 if device == "cpu" else 0.05  # a GPU's float rounding may move a pixel a level
        limit = TOLERANCE.get(tv_name, exact)
        assert errors[best_sign[name, b, sign]] <= limit, f"{policy} {tv_name} bin {b} sign {sign}: {errors}"
    # DALI and torchvision may negate opposite ways (a shear's sign convention), but DALI's two
    # signs must act like torchvision's two, or half of torchvision's range would be missing.
    for (name, b, sign), tv_sign in best_sign.items():
        if sign == 1:
            assert tv_sign != best_sign[name, b, 0], f"{policy} {name} bin {b}: both signs alike"


@pytest.mark.parametrize("policy", POLICIES)
def test_operations_match_torchvision(train_root: Path, policy: str) -> None:
    """Each operation, at a middle and the top bin and both signs, gives torchvision's image."""
    _check_ops_match_torchvision(train_root, policy, "cpu")


def test_operation_sets_and_autoaugment_table_are_torchvisions() -> None:
    """RandAugment and TrivialAugmentWide draw from torchvision's 14 operations; AutoAugment's
    sub-policies are torchvision's IMAGENET table (op, probability, magnitude bin), in order."""
    for policy in ("randaugment", "trivialaugment"):
        augs, _, space, _ = _op_cases(policy)
        assert sorted(TV_NAMES[a.name] for a in augs) == sorted(space)
    ours = [[(TV_NAMES[aug.name], p, mag) for aug, p, mag in sub]
            for sub in autoaugment_imagenet_policy().sub_policies]
    theirs = [[step for step in sub if step[1] > 0]  # a step with probability 0 never runs
              for sub in AutoAugment(AutoAugmentPolicy.IMAGENET).policies]
    assert ours == theirs


# -- the policies in the train graph -------------------------------------------------------------

@pytest.mark.parametrize(("policy", "dtype", "layout"), [
    ("randaugment", "float32", "NCHW"),
    ("trivialaugment", "float16", "NHWC"),
    ("autoaugment", "float16", "NHWC"),
])
def test_policy_changes_images_and_keeps_form(train_root: Path, policy: str, dtype: str, layout: str) -> None:
    """Most images differ from "basic" under the same seed (same files, crops and flips); shape,
    dtype, layout and the normalized range stay; no deprecation warning reaches the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, labels = _batches(train_root, _cpu(augment=policy, dtype=dtype, layout=layout))
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    basic, basic_labels = _basic(train_root, dtype, layout)
    expected = (16, 3, 64, 64) if layout == "NCHW" else (16, 64, 64, 3)
    assert tuple(images.shape) == tuple(basic.shape) == expected
    assert images.dtype == getattr(torch, dtype) and images.device.type == "cpu"
    assert torch.equal(labels, basic_labels)
    assert images.float().min() >= LOW - 1e-2 and images.float().max() <= HIGH + 1e-2
    changed = (images.float() - basic.float()).abs().flatten(1).amax(dim=1) > 1e-3
    assert changed.sum() >= 10, f"only {int(changed.sum())} of 16 images changed"


@pytest.mark.parametrize("policy", POLICIES)
def test_seed_repeats_batches_and_another_seed_changes_them(train_root: Path, policy: str) -> None:
    first, labels = _batches(train_root, _cpu(augment=policy, seed=5), count=1)
    again, labels_again = _batches(train_root, _cpu(augment=policy, seed=5), count=1)
    other, _ = _batches(train_root, _cpu(augment=policy, seed=6), count=1)
    assert torch.equal(first, again) and torch.equal(labels, labels_again)
    assert not torch.equal(first, other)


def _check_resume(root: Path, cfg: PipelineConfig) -> None:
    """Restored after 7 of 9 batches, a loader repeats the rest of the epoch and the next one's first."""
    data = scan_image_folder(root)
    original = make_loader(data, cfg, train=True)
    stream = iter(original)
    for _ in range(len(original) - 2):
        next(stream)
    state = original.state()
    expected = [*stream, next(iter(original))]
    restored = make_loader(data, cfg, train=True, checkpoint=state)
    got = [*restored, next(iter(restored))]
    assert len(got) == len(expected) == 3
    for (images, labels), (want_images, want_labels) in zip(got, expected, strict=True):
        assert torch.equal(labels, want_labels) and torch.equal(images, want_images)


@pytest.mark.parametrize("policy", POLICIES)
def test_resume_repeats_augmented_batches(train_root: Path, policy: str) -> None:
    _check_resume(train_root, _cpu(augment=policy, seed=9, crop_size=32, resize_size=40))


def test_eval_ignores_the_policy(val_root: Path) -> None:
    data, cfg = scan_image_folder(val_root), _cpu()
    plain = next(iter(make_loader(data, cfg, train=False)))[0]
    policy = next(iter(make_loader(data, cfg.replace(augment="randaugment"), train=False)))[0]
    assert torch.equal(plain, policy)


# -- the GPU graph ----------------------------------------------------------------------------------

def _gpu(**overrides: object) -> PipelineConfig:
    return _cpu(device="gpu", **overrides)


@pytest.mark.gpu
@pytest.mark.parametrize("policy", POLICIES)
def test_gpu_operations_match_torchvision_and_cpu(train_root: Path, policy: str) -> None:
    """The GPU operators meet the same torchvision tolerances and agree with the CPU ones."""
    _check_ops_match_torchvision(train_root, policy, "gpu")
    gpu, cpu = _run_ops(train_root, policy, "gpu"), _run_ops(train_root, policy, "cpu")
    for key in cpu:
        assert _mean_abs(gpu[key], cpu[key]) <= 0.5, f"{policy} {key}"


@pytest.mark.gpu
@pytest.mark.parametrize("policy", POLICIES)
def test_gpu_policy_form_determinism_and_change(train_root: Path, policy: str) -> None:
    """CUDA tensors of the asked form; a seed repeats them, another changes them; they differ
    from the GPU's "basic" batches under the same seed."""
    images, labels = _batches(train_root, _gpu(augment=policy, seed=5))
    again, _ = _batches(train_root, _gpu(augment=policy, seed=5))
    other, _ = _batches(train_root, _gpu(augment=policy, seed=6))
    basic, basic_labels = _batches(train_root, _gpu(seed=5))
    assert images.is_cuda and labels.is_cuda
    assert tuple(images.shape) == (16, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= LOW - 1e-2 and images.max() <= HIGH + 1e-2
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert torch.equal(labels, basic_labels)
    changed = (images - basic).abs().flatten(1).amax(dim=1) > 1e-3
    assert changed.sum() >= 10, f"only {int(changed.sum())} of 16 images changed"


@pytest.mark.gpu
@pytest.mark.parametrize("policy", POLICIES)
def test_gpu_resume_repeats_augmented_batches(train_root: Path, policy: str) -> None:
    _check_resume(train_root, _gpu(augment=policy, seed=9, crop_size=32, resize_size=40))
