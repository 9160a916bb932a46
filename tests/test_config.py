"""PipelineConfig validation: a wrong value names its field and the allowed range."""

from __future__ import annotations

import dataclasses
import re

import pytest

from dali_pipelines import PipelineConfig
from dali_pipelines._util.fields import CHECK
from dali_pipelines.config import default_num_threads
from dali_pipelines.graphs import decoder_args

_MAGNITUDE = "augment_magnitude (a bin of augment_magnitude_bins=31)"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("batch_size", 0, "batch_size must be in [1, 65536], got 0"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("num_threads", 0, "num_threads must be 'auto' or in [1, 1024], got 0"),
        ("device", "tpu", "device must be one of gpu, cpu; got 'tpu'"),
        ("device_id", -1, "device_id must be in [0, 1023]"),
        ("crop_size", 4, "crop_size must be in [8, 4096]"),
        ("resize_size", 100, "resize_size must be in [224, 8192]"),
        ("random_area", (0.5, 0.1), "random_area must be (min, max)"),
        ("random_aspect_ratio", (0.0, 1.0), "random_aspect_ratio must be (min, max)"),
        ("mean", (0.5, 0.5), "mean must be three values"),
        ("std", (0.0, 0.2, 0.2), "std must be three values"),
        ("seed", -3, "seed must be in [0, 2147483647]"),
        ("num_shards", 0, "num_shards must be in [1, 65536]"),
        ("prefetch_queue_depth", 0, "prefetch_queue_depth must be in [1, 32]"),
        ("dtype", "int8", "dtype must be one of float32, float16"),
        ("layout", "CHW", "layout must be one of NCHW, NHWC"),
        ("hw_decoder_load", 1.5, "hw_decoder_load must be in [0, 1]"),
        ("hw_decoder_load", True, "hw_decoder_load must be a number in [0, 1], got True"),
        ("decoder_host_memory_padding", -1, "decoder_host_memory_padding must be in"),
        ("jpeg_fancy_upsampling_train", 1, "jpeg_fancy_upsampling_train must be True or False, got 1"),
        ("jpeg_fancy_upsampling_eval", "yes", "jpeg_fancy_upsampling_eval must be True or False"),
        ("apply_exif_orientation", None, "apply_exif_orientation must be True or False"),
        ("augment", "randaug", "augment must be one of basic, randaugment, trivialaugment, autoaugment; got"),
        ("augment_ops", 0, "augment_ops must be in [1, 16], got 0"),
        ("augment_ops", 2.0, "augment_ops must be an integer"),
        ("augment_magnitude_bins", 1, "augment_magnitude_bins must be in [2, 256], got 1"),
        ("augment_magnitude", -1, f"{_MAGNITUDE} must be in [0, 30], got -1"),
        ("augment_magnitude", 31, f"{_MAGNITUDE} must be in [0, 30], got 31"),
        ("augment_magnitude", True, f"{_MAGNITUDE} must be an integer"),
    ],
)
def test_bad_value_names_field_and_range(field: str, value: object, expected: str) -> None:
    """Each field rejects an out-of-range value with a message naming it."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        PipelineConfig(**{field: value})


def test_every_field_declares_the_values_it_accepts() -> None:
    """One validation style: each field carries its check in its metadata, none is checked by hand."""
    undeclared = [f.name for f in dataclasses.fields(PipelineConfig) if f.metadata.get(CHECK) is None]
    assert undeclared == []


def test_shard_id_must_be_below_num_shards() -> None:
    """shard_id is checked against num_shards, the range quoted in the message."""
    with pytest.raises(ValueError, match=r"shard_id must be in \[0, 1\], got 2"):
        PipelineConfig(shard_id=2, num_shards=2)


def test_augment_magnitude_is_bounded_by_the_bins() -> None:
    """The magnitude is a bin index: its range follows augment_magnitude_bins."""
    cfg = PipelineConfig(augment="randaugment", augment_magnitude_bins=11, augment_magnitude=10)
    assert cfg.augment_magnitude == 10
    with pytest.raises(ValueError, match=re.escape("augment_magnitude_bins=11) must be in [0, 10], got 11")):
        PipelineConfig(augment="randaugment", augment_magnitude_bins=11, augment_magnitude=11)


def test_bool_is_not_an_integer() -> None:
    """True would silently mean batch size 1; it is refused."""
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        PipelineConfig(batch_size=True)


def test_replace_validates_again_and_summary_lists_fields() -> None:
    """replace() returns a validated copy; summary() names every setting."""
    cfg = PipelineConfig(device="cpu", batch_size=8)
    assert cfg.replace(batch_size=16).batch_size == 16
    with pytest.raises(ValueError, match="batch_size"):
        cfg.replace(batch_size=0)
    summary = cfg.summary()
    for name in cfg.to_dict():
        assert name in summary


def test_thread_default_depends_on_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset num_threads resolves per device: up to 8 threads on "cpu", up to 4 on "gpu"."""
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert PipelineConfig(device="cpu").num_threads == default_num_threads("cpu") == 8
    assert PipelineConfig(device="gpu").num_threads == default_num_threads("gpu") == 4
    assert PipelineConfig(device="gpu", num_threads=12).num_threads == 12
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert PipelineConfig(device="gpu").num_threads == 2
    with pytest.raises(ValueError, match="device must be one of gpu, cpu"):
        default_num_threads("tpu")


def test_fancy_upsampling_is_per_graph() -> None:
    """By default the GPU train graph decodes without fancy upsampling and eval with it."""
    cfg = PipelineConfig(device="gpu")
    assert decoder_args(cfg, train=True)["jpeg_fancy_upsampling"] is False
    assert decoder_args(cfg)["jpeg_fancy_upsampling"] is True
    flipped = cfg.replace(jpeg_fancy_upsampling_train=True, jpeg_fancy_upsampling_eval=False)
    assert decoder_args(flipped, train=True)["jpeg_fancy_upsampling"] is True
    assert decoder_args(flipped)["jpeg_fancy_upsampling"] is False
    assert decoder_args(cfg)["adjust_orientation"] is False  # as torchvision's ImageFolder
