"""The train and eval graphs on real JPEGs: shapes, dtypes, layouts, values, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from dali_pipelines import IMAGENET_MEAN, IMAGENET_STD, PipelineConfig, make_loader, scan_image_folder

# Normalized values of pixel 0 and 255 for the most extreme channel: the output range.
LOW = min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
HIGH = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))


def _first_batch(root: Path, cfg: PipelineConfig, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = next(iter(make_loader(scan_image_folder(root), cfg, train=train)))
    return images, labels


def _cpu(**overrides: object) -> PipelineConfig:
    return PipelineConfig(**{"batch_size": 8, "device": "cpu", "num_threads": 2, **overrides})


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("dtype", "layout"), [("float32", "NCHW"), ("float16", "NHWC")])
def test_shapes_dtypes_layouts_ranges(train_root: Path, train: bool, dtype: str, layout: str) -> None:
    """Batches have the asked shape, dtype and layout; values lie in the normalized range."""
    images, labels = _first_batch(train_root, _cpu(dtype=dtype, layout=layout, crop_size=96,
                                                    resize_size=110), train=train)
    expected = (8, 3, 96, 96) if layout == "NCHW" else (8, 96, 96, 3)
    assert tuple(images.shape) == expected
    assert images.dtype == getattr(torch, dtype) and images.device.type == "cpu"
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (8,)
    assert labels.min() >= 0 and labels.max() < 8
    assert images.float().min() >= LOW - 1e-2 and images.float().max() <= HIGH + 1e-2
    # Real photos span much of the range; a constant or zero output would not.
    assert images.float().std() > 0.3


def test_eval_matches_torchvision_reference(val_root: Path) -> None:
    """Eval output is close to PIL + Resize(256) + CenterCrop(224) + ToTensor + Normalize.

    Tolerance reached (normalized units, 1.0 ~ 57/255): mean absolute difference over the
    batch <= 0.06, each image <= 0.3. The residue is antialiasing filters (PIL's vs DALI's
    triangle filter, largest on the high-frequency texture class) and half-pixel rounding
    of the center-crop offset (Python rounds 36.5 to 36, DALI to 37).
    """
    data = scan_image_folder(val_root)
    images, _ = next(iter(make_loader(data, _cpu(batch_size=len(data)), train=False)))
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([reference(Image.open(f).convert("RGB")) for f in data.files])
    diff = (images - expected).abs()
    assert diff.mean() <= 0.06
    assert diff.mean(dim=(1, 2, 3)).max() <= 0.3


def test_same_seed_same_batches_other_seed_differs(train_root: Path) -> None:
    """Train batches (shuffle, crops, flips) repeat exactly for a seed and change with it."""
    first, labels_first = _first_batch(train_root, _cpu(seed=7, crop_size=64), train=True)
    again, labels_again = _first_batch(train_root, _cpu(seed=7, crop_size=64), train=True)
    other, _ = _first_batch(train_root, _cpu(seed=8, crop_size=64), train=True)
    assert torch.equal(first, again) and torch.equal(labels_first, labels_again)
    assert not torch.equal(first, other)


def test_train_epochs_reshuffle(train_root: Path) -> None:
    """Each epoch is a new permutation: the label order of epoch 0 and epoch 1 differ."""
    loader = make_loader(scan_image_folder(train_root), _cpu(crop_size=32, resize_size=40), train=True)
    orders = [torch.cat([labels for _, labels in loader]).tolist() for _ in range(2)]
    assert len(orders[0]) == len(loader) * 8
    assert orders[0] != orders[1]
    assert sorted(orders[0]) != orders[0]  # not in class order even in epoch 0


@pytest.mark.gpu
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_gpu_graph_shapes_and_device(train_root: Path, train: bool) -> None:
    """The GPU graph (nvJPEG "mixed" decode) yields CUDA tensors of the same form."""
    cfg = PipelineConfig(batch_size=8, device="gpu", num_threads=2)
    images, labels = _first_batch(train_root, cfg, train=train)
    assert images.is_cuda and labels.is_cuda
    assert tuple(images.shape) == (8, 3, 224, 224) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert images.min() >= LOW - 1e-2 and images.max() <= HIGH + 1e-2


@pytest.mark.gpu
def test_gpu_eval_matches_cpu_eval(val_root: Path) -> None:
    """nvJPEG + GPU resize agree with the CPU graph on the same files.

    Tolerance: mean absolute difference <= 0.02 normalized (~1/255); decoders differ in
    IDCT rounding, resize kernels in float accumulation order.
    """
    data = scan_image_folder(val_root)
    cpu_cfg = _cpu(batch_size=len(data))
    gpu_cfg = cpu_cfg.replace(device="gpu")
    cpu_images, cpu_labels = next(iter(make_loader(data, cpu_cfg, train=False)))
    gpu_images, gpu_labels = next(iter(make_loader(data, gpu_cfg, train=False)))
    assert torch.equal(cpu_labels, gpu_labels.cpu())
    assert (gpu_images.cpu() - cpu_images).abs().mean() <= 0.02
