"""Models by builder name, their input sizes, initial weights from a file (strict, --finetune), the
progressive-resize schedule against FFCV's rule, the train loader that follows it, and the size
settings.

Whole runs with them (and their exact resume) are in test_train_recipes.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from dali_pipelines import DaliLoader, PipelineConfig, make_loader, scan_image_folder
from train.config import ConfigError, TrainConfig, resize_for
from train.models import InputSizeError, build, check_input_sizes, classifier_keys, model_name
from train.resolution import ResizeSchedule, SizedTrainLoader
from train.weights import WeightsError, load_weights, read_weights


def test_model_names_are_torchvisions_classifiers() -> None:
    assert model_name("resnet50") == "resnet50"
    with pytest.raises(Exception, match=r"'resnet5' is not a torchvision classification model \(did you mean "
                                        r"resnet50"):
        model_name("resnet5")
    assert classifier_keys("googlenet", 3) == {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias",
                                               "aux2.fc2.weight", "aux2.fc2.bias"}
    assert classifier_keys("vit_b_16", 3, image_size=64) == {"heads.head.weight", "heads.head.bias"}
    assert classifier_keys("regnet_x_400mf", 3) == {"fc.weight", "fc.bias"}  # built on the CPU: meta fails
    with torch.device("meta"):
        assert build("inception_v3", 3).AuxLogits is None  # no aux head outside GoogLeNet
        assert build("vit_b_16", 3, image_size=64).image_size == 64


def test_input_size_the_model_cannot_take_is_refused() -> None:
    """alexnet's features shrink to nothing at 32 px: named before any data is read (meta device:
    shapes only)."""
    with torch.device("meta"):
        model = build("alexnet", 3)
    check_input_sizes(model, "alexnet", [("--image-size", 64)], torch.device("meta"), channels_last=False)
    with pytest.raises(InputSizeError, match="--train-size 32: --model alexnet cannot take 32x32 images"):
        check_input_sizes(model, "alexnet", [("--train-size", 32), ("--eval-size", 64)], torch.device("meta"),
                          channels_last=False)


def _squeezenet(classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build("squeezenet1_1", classes)


def test_weights_load_strictly_and_finetune_starts_the_classifier_afresh(tmp_path: Path) -> None:
    """A state_dict for 5 classes does not fit 3 without --finetune (the message says so); with it,
    every tensor but the classifier's comes from the file. DDP-prefixed keys and torchvision
    reference checkpoints ({"model": ..., "args": Namespace}) load as well."""
    source = _squeezenet(5, seed=1)
    path = tmp_path / "five.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()},
                "args": argparse.Namespace(lr=0.1)}, path)
    weights = read_weights(path)
    target = _squeezenet(3, seed=2)
    with pytest.raises(WeightsError, match=r"other shapes: classifier.1.weight, classifier.1.bias.*pass "
                                           r"--finetune to start the classifier afresh for 3 classes"):
        load_weights(target, weights, name="squeezenet1_1", num_classes=3, finetune=False, image_size=64)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    load_weights(target, weights, name="squeezenet1_1", num_classes=3, finetune=True, image_size=64)
    for key, value in target.state_dict().items():
        wanted = fresh[key] if key.startswith("classifier.1.") else source.state_dict()[key]
        assert torch.equal(value, wanted), key


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    """A python -m train checkpoint names its model; a plain state_dict of another model lists what
    does not fit."""
    path = tmp_path / "ckpt.pt"
    state = _squeezenet(3, 0).state_dict()
    torch.save({"format_version": 3, "model": state, "config": {"model": "squeezenet1_1"}}, path)
    target = torchvision.models.squeezenet1_0(num_classes=3)
    fit = {"name": "squeezenet1_0", "num_classes": 3, "finetune": False, "image_size": 64}
    with pytest.raises(WeightsError, match="of --model squeezenet1_1, not of --model squeezenet1_0"):
        load_weights(target, read_weights(path), **fit)
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"does not fit --model squeezenet1_0 .*other shapes: features"):
        load_weights(target, read_weights(path), **fit)
    (tmp_path / "text.pt").write_text("not torch")
    with pytest.raises(WeightsError, match="torch cannot read it"):
        read_weights(tmp_path / "text.pt")


# --- sizes --------------------------------------------------------------------------------------


def _ffcv_resolution(epoch: int, min_res: int, max_res: int, end_ramp: int, start_ramp: int) -> int:
    """ffcv-imagenet's get_resolution, restated."""
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    interp = np.interp([epoch], [start_ramp, end_ramp], [min_res, max_res])
    return int(np.round(interp[0] / 32)) * 32


@pytest.mark.parametrize(("spec", "epochs"), [("160:192:65:76", 88), ("128:224:2:10", 16), ("160:256", 40)])
def test_progressive_sizes_follow_ffcv(spec: str, epochs: int) -> None:
    schedule = ResizeSchedule.parse(spec)
    low, high = schedule.ramp(epochs)
    for epoch in range(epochs):
        assert schedule.size_at(epoch, epochs) == _ffcv_resolution(epoch, schedule.start, schedule.end,
                                                                   high, low), epoch


@pytest.mark.parametrize(("spec", "message"), [
    ("160", "expected START:END"), ("150:192", "multiples of 32"), ("192:160", "START must be below END"),
    ("160:192:9:3", "FROM_EPOCH must not be after TO_EPOCH")])
def test_bad_progressive_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResizeSchedule.parse(spec)


def test_size_settings(tmp_path: Path) -> None:
    """--image-size sets both sizes; --train-size / --eval-size each one; --progressive-resize
    evaluates at END; a config without the size settings (earlier checkpoints) keeps its sizes."""
    data = str(tmp_path)
    plain = TrainConfig(data=data, image_size=160)
    assert (plain.train_crop_at(0), plain.eval_crop, plain.resize_size) == (160, 160, 183)
    fixres = TrainConfig(data=data, train_size=128, eval_size=224)
    assert (fixres.train_crop_at(5), fixres.eval_crop, fixres.resize_size) == (128, 224, 256)
    ramp = TrainConfig(data=data, epochs=10, progressive_resize="160:192:2:6")
    assert [ramp.train_crop_at(e) for e in range(10)] == [160, 160, 160, 160, 192, 192, 192, 192, 192, 192]
    assert ramp.eval_crop == 192 and ramp.out == "runs/googlenet"
    assert TrainConfig(data=data, model="resnet18").out == "runs/resnet18"
    for settings, message in [
            ({"train_size": 128, "progressive_resize": "160:192"}, "pass one of them"),
            ({"progressive_resize": "160:192:1:12", "epochs": 10}, "TO_EPOCH 12 is not an epoch"),
            ({"model": "vit_b_16", "train_size": 128}, "built for one input size"),
            ({"model": "vit_b_16", "image_size": 128, "tune": True}, "or leave --tune out at 128 px"),
            ({"finetune": True}, "pass --weights too"),
            ({"opt": "adam"}, "--opt: invalid choice"),
            ({"model": "resnet"}, "not a torchvision classification model")]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(data=data, **settings)


def test_the_train_graph_is_built_again_only_when_the_size_changes(val_root: Path) -> None:
    """Sizes 32, 32, 64 over three epochs of 24 images: two graphs are built (the first, then 64 px
    from the old graph's position), and the rebuilt one continues the sample order of a graph
    never rebuilt."""
    source = scan_image_folder(val_root)
    base = PipelineConfig(batch_size=8, num_threads=2, device="cpu", seed=1)
    built: list[int] = []

    def build(size: int, position: str | None) -> DaliLoader:
        built.append(size)
        return make_loader(source, base.replace(crop_size=size, resize_size=resize_for(size)), train=True,
                           checkpoint=position)

    sized = SizedTrainLoader(build, [32, 32, 64].__getitem__, epoch=0, checkpoint=None)
    try:
        orders = [[int(x) for _, labels in sized.for_epoch(epoch) for x in labels] for epoch in range(3)]
        assert sized.loader.cfg.crop_size == 64
    finally:
        sized.close()
    assert built == [32, 64]
    plain = make_loader(source, base.replace(crop_size=32, resize_size=resize_for(32)), train=True)
    try:
        expected = [[int(x) for _, labels in plain for x in labels] for _ in range(3)]
    finally:
        plain.close()
    assert orders == expected and orders[1] != orders[2]
