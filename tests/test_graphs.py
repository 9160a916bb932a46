"""The train and eval graphs on real JPEGs: shapes, dtypes, layouts, values, determinism, random
erasing.

Values against torchvision's transforms: ``test_torchvision_parity.py``; every kind of JPEG:
``test_edge_jpegs.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_pipelines import PipelineConfig, make_loader, scan_image_folder
from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD

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


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_random_erasing_boxes_follow_torchvision(train_root: Path, device: str) -> None:
    """--random-erase 1: every image of a batch has one box of zeros (after normalization) whose
    area share and aspect are in RandomErasing's ranges, strictly inside the image; 0.5 erases some
    images of a batch and leaves the others. On the GPU the erasing runs on the GPU's batch."""
    size = 48
    source = scan_image_folder(train_root)
    base = PipelineConfig(batch_size=16, num_threads=2, device=device, crop_size=size, resize_size=55, seed=7)
    counts = {}
    for probability in (1.0, 0.5):
        loader = make_loader(source, base.replace(random_erase=probability), train=True)
        images, _ = next(iter(loader))
        loader.close()
        assert images.is_cuda == (device == "gpu")
        erased = 0
        for zero in (images == 0).all(dim=1).cpu():  # [H, W]: pixels zero in every channel
            rows, cols = torch.nonzero(zero, as_tuple=True)
            if len(rows) == 0:
                continue
            erased += 1
            height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
            assert int(zero.sum()) == height * width  # one filled rectangle
            assert height < size and width < size
            assert 0.02 * 0.85 <= height * width / size**2 <= 0.33 * 1.15  # rounding of h and w
            assert 0.3 * 0.7 <= height / width <= 3.3 / 0.7
        counts[probability] = erased
    assert counts[1.0] == 16 and 0 < counts[0.5] < 16


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
