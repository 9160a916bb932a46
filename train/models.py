"""Any torchvision classification model by its builder name: construction (random weights, nothing
downloaded), its training loss (GoogLeNet with its auxiliary heads, the others on their logits),
the input sizes it can take, and the tensors that depend on the class count.

torchvision (and GoogLeNet's module, which imports it) is imported inside the functions that
build models: importing the settings (``train.config``) stays quick for ``--help``.
"""

from __future__ import annotations

import argparse
import difflib
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

DEFAULT_MODEL = "googlenet"
# Models whose position embeddings (ViT) or attention windows (MaxViT) are laid out for one input
# size, fixed when the model is built: the builder's keyword for it.
FIXED_SIZE_ARGUMENT = {"vit_": "image_size", "maxvit_": "input_size"}


@functools.cache
def model_names() -> tuple[str, ...]:
    """Every classification builder in ``torchvision.models`` (detection, segmentation, video and
    quantized models live in its sub-packages and are not listed)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def model_name(text: str) -> str:
    """argparse type: a torchvision classification builder name, with close matches when it is not."""
    names = model_names()
    if text in names:
        return text
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "e.g. resnet50, mobilenet_v3_small, vit_b_16"
    raise argparse.ArgumentTypeError(f"{text!r} is not a torchvision classification model ({hint}; "
                                     f"{len(names)} names in torchvision.models.list_models(module="
                                     "torchvision.models))")


def fixed_size_argument(name: str) -> str | None:
    """The builder keyword fixing ``name``'s input size, or None when any large enough size works."""
    return next((arg for prefix, arg in FIXED_SIZE_ARGUMENT.items() if name.startswith(prefix)), None)


def build(name: str, num_classes: int, *, image_size: int = 224) -> nn.Module:
    """torchvision's ``name`` with random weights (``weights=None``: nothing is downloaded) and
    ``num_classes`` outputs. GoogLeNet keeps its auxiliary heads (trained with them, as the paper);
    Inception v3 is built without its one. ``image_size`` is used by the models built for one
    input size (ViT, MaxViT) only."""
    import torchvision

    from train.model import build_googlenet

    if name == "googlenet":
        return build_googlenet(num_classes)
    extra: dict[str, Any] = {}
    if name == "inception_v3":
        # transform_input=False: the pipelines already normalize with ImageNet mean/std.
        extra = {"aux_logits": False, "init_weights": True, "transform_input": False}
    fixed = fixed_size_argument(name)
    if fixed == "image_size":
        extra["image_size"] = image_size
    elif fixed == "input_size":
        extra["input_size"] = (image_size, image_size)
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)


def inference_model(name: str, num_classes: int, *, image_size: int = 224) -> nn.Module:
    """The model as it serves predictions: GoogLeNet without its training-only auxiliary heads
    (whose weights ``inference_state_dict`` leaves out), the others as ``build`` makes them."""
    from train.model import build_googlenet

    if name == "googlenet":
        return build_googlenet(num_classes, aux_logits=False)
    return build(name, num_classes, image_size=image_size)


def inference_state_dict(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A training state_dict without the auxiliary heads' tensors: loads into ``inference_model``."""
    if name != "googlenet":
        return dict(state)
    return {key: value for key, value in state.items() if not key.startswith(AUX_PREFIXES)}


AUX_PREFIXES = ("aux1.", "aux2.")  # GoogLeNet's auxiliary heads in its state_dict


@dataclass(frozen=True)
class LossParts:
    """A training forward's loss: what is optimized, and its parts as the records report them."""

    total: torch.Tensor  # main + aux: what backward() sees
    main: torch.Tensor  # the main head's loss, on the footing of the validation loss
    aux: torch.Tensor | None  # the auxiliary heads' weighted share (0.3 x (aux1 + aux2)); None without
    logits: torch.Tensor  # the main head's


def model_loss(outputs: Any, targets: torch.Tensor, criterion: nn.Module) -> LossParts:
    """The loss of a train-mode forward: GoogLeNet's ``GoogLeNetOutputs`` gives main + 0.3 x (aux1 +
    aux2), each head against the same targets (indices, or mixed soft targets); a plain tensor of
    logits gives the criterion's loss alone."""
    if isinstance(outputs, torch.Tensor):
        main = criterion(outputs, targets)
        return LossParts(total=main, main=main, aux=None, logits=outputs)
    from train.model import AUX_WEIGHT

    main = criterion(outputs.logits, targets)
    aux = AUX_WEIGHT * (criterion(outputs.aux_logits1, targets) + criterion(outputs.aux_logits2, targets))
    return LossParts(total=main + aux, main=main, aux=aux, logits=outputs.logits)


def has_aux_heads(name: str) -> bool:
    """Whether ``build(name, ...)`` in train mode returns auxiliary logits beside the main ones."""
    return name == "googlenet"


class InputSizeError(ValueError):
    """A model cannot take the input size asked for; the message names the flag and the fix."""


@torch.no_grad()
def check_input_sizes(model: nn.Module, name: str, sizes: list[tuple[str, int]], device: torch.device,
                      channels_last: bool) -> None:
    """One eval-mode forward of a single zero image per size, before any data is read: a size the
    architecture cannot take (its feature maps shrink to nothing, a fixed-size model) fails here,
    named, instead of at the first step. Eval mode: no BatchNorm statistics change, no dropout
    draws, so the run's random streams are untouched."""
    was_training = model.training
    model.eval()
    try:
        for flag, size in sizes:
            image = torch.zeros(1, 3, size, size, device=device)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            try:
                model(image)
            except (RuntimeError, AssertionError, ValueError) as err:
                reason = " ".join(str(err).split())[:160]
                raise InputSizeError(f"{flag} {size}: --model {name} cannot take {size}x{size} images "
                                     f"({reason}); pick another size or model") from None
    finally:
        model.train(was_training)


def classifier_keys(name: str, num_classes: int, *, image_size: int = 224) -> frozenset[str]:
    """The state_dict keys whose tensors depend on the class count (the classifier, and GoogLeNet's
    auxiliary classifiers): those whose shapes differ between the model built for ``num_classes``
    and for one class more. It holds for every architecture without a table of head names."""
    return frozenset(key for key, (mine, other) in _shapes_for(name, (num_classes, num_classes + 1),
                                                               image_size).items() if mine != other)


def _shapes_for(name: str, class_counts: tuple[int, int], image_size: int) -> dict[str, tuple[tuple, tuple]]:
    """Each state_dict key's shapes in the model built for each of two class counts."""
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            built = [build(name, k, image_size=image_size) for k in class_counts]
    except NotImplementedError:  # RegNet computes its widths with tensors whose values meta lacks
        with torch.random.fork_rng(devices=[]):  # a throw-away build leaves the run's RNG alone
            built = [build(name, k, image_size=image_size) for k in class_counts]
    first, second = (model.state_dict() for model in built)
    return {key: (tuple(first[key].shape), tuple(second[key].shape)) for key in first}
