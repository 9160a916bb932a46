"""Every kind of JPEG through the train graph (several epochs of random crops) and the eval graph.

On the GPU this is the guard against nvImageCodec's region-of-interest decode failing on some
kind of file (a failure there raises, or falls back to the CPU, instead of killing a long run
later): both nvJPEG back ends are run, the hardware decoder (``hw_decoder_load=1.0``) and CUDA
(``0.0``). The same files go through the CPU graphs here, which also tests the files themselves.
Eval values against torchvision are checked in ``test_torchvision_parity.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jpeg_kinds import EDGE_KINDS, write_edge_kinds
from PIL import Image

from dali_pipelines import ImageFolderData, PipelineConfig, make_loader
from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD

LOW = min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
HIGH = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
EPOCHS = 4
TINY = {"tiny_1x1", "tiny_7x5"}  # a crop of a few pixels may be (nearly) one colour


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> ImageFolderData:
    return write_edge_kinds(tmp_path_factory.mktemp("edge_kinds"))


def check_batches(batches: list[tuple[torch.Tensor, torch.Tensor]], data: ImageFolderData, crop: int) -> None:
    """Every kind decoded to a plausible image in every batch: right shape, finite, in range, not flat."""
    for batch, labels in batches:
        assert tuple(batch.shape[1:]) == (3, crop, crop)
        assert sorted(labels.tolist()) == list(range(len(data)))  # one batch = every kind once
        images = batch.float().cpu()
        assert torch.isfinite(images).all()
        assert images.min() >= LOW - 1e-2 and images.max() <= HIGH + 1e-2
        for image, label in zip(images, labels.tolist(), strict=True):
            name = data.classes[label]
            spread = image.std(dim=(1, 2)).max()  # a decoder failing to zeros or grey is flat
            assert name in TINY or spread > 0.02, f"{name}: spatial std {spread:.4f}"


def run_graphs(data: ImageFolderData, cfg: PipelineConfig) -> None:
    train = make_loader(data, cfg, train=True)
    check_batches([batch for _ in range(EPOCHS) for batch in train], data, cfg.crop_size)
    check_batches(list(make_loader(data, cfg, train=False)), data, cfg.crop_size)


def test_fixture_holds_every_kind(kinds: ImageFolderData) -> None:
    """One file per kind, each a JPEG (SOI marker) of the kind its name says where PIL can tell."""
    assert [Path(f).stem for f in kinds.files] == list(EDGE_KINDS)
    expected = {"grayscale": "L", "cmyk": "CMYK", "tiny_1x1": "RGB"}
    for path in kinds.files:
        assert Path(path).read_bytes()[:2] == b"\xff\xd8"
        with Image.open(path) as image:
            name = Path(path).stem
            assert image.mode == expected.get(name, image.mode)
            assert ("progressive" in image.info) == name.startswith("progressive")
            if name == "large_4000x3000":
                assert image.size == (4000, 3000)
            if name == "exif_rotated":
                assert image.getexif()[0x0112] == 6
    for name in ("restart_blocks", "restart_rows"):
        content = Path(kinds.files[list(EDGE_KINDS).index(name)]).read_bytes()
        assert b"\xff\xdd" in content and b"\xff\xd0" in content  # DRI and an RST0 marker


def test_every_kind_through_cpu_graphs(kinds: ImageFolderData) -> None:
    """Several epochs of random crops, then eval, on libjpeg-turbo (DALI's CPU decoder)."""
    run_graphs(kinds, PipelineConfig(batch_size=len(kinds), device="cpu", num_threads=2, crop_size=64,
                                     resize_size=73))


@pytest.mark.gpu
@pytest.mark.parametrize("hw_decoder_load", [1.0, 0.0], ids=["hardware-decoder", "cuda"])
def test_every_kind_through_gpu_graphs(kinds: ImageFolderData, hw_decoder_load: float) -> None:
    """The same on nvJPEG ("mixed"), at full size: ROI decode for train, full decode for eval."""
    run_graphs(kinds, PipelineConfig(batch_size=len(kinds), device="gpu", num_threads=2,
                                     hw_decoder_load=hw_decoder_load))
