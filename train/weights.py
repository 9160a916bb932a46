"""Initial weights from a file (--weights): a torchvision-style state_dict, a checkpoint of
``python -m train`` or of torchvision's reference scripts, loaded strictly; --finetune starts the
class-count-dependent tensors (the classifier) afresh for another class count.

Nothing is fetched: the file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from train.models import AUX_PREFIXES, classifier_keys

_logger = logging.getLogger(__name__)

# Keys under which checkpoints of common trainers keep the model's state_dict (torchvision's
# reference scripts: "model"; timm and Lightning: "state_dict"), after our own format's.
NESTED_KEYS = ("model", "state_dict", "model_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP's and torch.compile's, at any depth of wrapping


class WeightsError(ValueError):
    """A --weights file cannot be used for this model; the message names the file and the fix."""


@dataclass(frozen=True)
class InitialWeights:
    """A state_dict read from a file, and what the file says about where it came from."""

    path: Path
    state: dict[str, torch.Tensor]
    model: str | None  # the --model of a python -m train checkpoint; None for other files
    source: str  # what part of the file was taken, for the log line


def read_weights(path: Path) -> InitialWeights:
    """The state_dict in ``path``: a python -m train checkpoint's EMA weights when it kept them (what
    its best.pt was picked by and what export ships), else its weights; another trainer's
    checkpoint's nested state_dict; or the file itself when it is one."""
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file; pass a state_dict saved with "
                           "torch.save(model.state_dict(), PATH) or a checkpoint")
    try:
        # torchvision's reference checkpoints carry their argparse.Namespace of settings.
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on foreign or damaged files in many ways
        reason = " ".join(str(err).split())[:200]
        raise WeightsError(f"--weights {path}: torch cannot read it as weights ({reason})") from None
    if isinstance(payload, dict) and "format_version" in payload and isinstance(payload.get("model"), dict):
        config = payload["config"] if isinstance(payload.get("config"), dict) else {}
        use_ema = isinstance(payload.get("ema"), dict)
        return InitialWeights(path, _unwrapped(payload["ema" if use_ema else "model"], path),
                              model=config.get("model", "googlenet"),
                              source="its EMA weights" if use_ema else "its weights")
    for key in NESTED_KEYS:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict) and _all_tensors(payload[key]):
            return InitialWeights(path, _unwrapped(payload[key], path), model=None, source=f"its {key!r}")
    if isinstance(payload, dict) and payload and _all_tensors(payload):
        return InitialWeights(path, _unwrapped(payload, path), model=None, source="a state_dict")
    raise WeightsError(f"--weights {path}: holds no state_dict (a dict of tensors, or one under "
                       f"{', '.join(map(repr, NESTED_KEYS))})")


def _all_tensors(value: dict[Any, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _unwrapped(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Keys without DDP's and torch.compile's prefixes."""
    if not _all_tensors(state):
        raise WeightsError(f"--weights {path}: its state_dict holds values other than tensors")
    pattern = re.compile("^(?:" + "|".join(map(re.escape, WRAPPER_PREFIXES)) + ")+")
    return {pattern.sub("", key): value for key, value in state.items()}


def load_weights(model: nn.Module, weights: InitialWeights, *, name: str, num_classes: int,
                 finetune: bool, image_size: int) -> None:
    """Copy ``weights`` into ``model`` (torchvision's ``name`` for ``num_classes``), strictly: every
    tensor of the model comes from the file, with its shape, and the file has no others. With
    ``finetune`` the class-count-dependent tensors keep the model's fresh initialisation instead.
    GoogLeNet's auxiliary heads (training-only) also keep theirs when the file has none of them,
    as inference weights (torchvision's ``aux_logits=False`` models, our exports) do not."""
    if weights.model is not None and weights.model != name:
        raise WeightsError(f"--weights {weights.path} is a checkpoint of --model {weights.model}, not of "
                           f"--model {name}; pass --model {weights.model} or weights of {name}")
    own = model.state_dict()
    fresh = classifier_keys(name, num_classes, image_size=image_size) if finetune else frozenset()
    if name == "googlenet" and not any(key.startswith(AUX_PREFIXES) for key in weights.state):
        fresh |= {key for key in own if key.startswith(AUX_PREFIXES)}
    taken = {key: value for key, value in weights.state.items() if key not in fresh}
    _check_fit(own, taken, fresh, weights.path, name=name, num_classes=num_classes, image_size=image_size)
    model.load_state_dict({**{key: own[key] for key in fresh}, **taken}, strict=True)
    kept = f"; {len(fresh)} class-count or auxiliary tensors initialised afresh" if fresh else ""
    _logger.info("initial weights: %s (%s, %d tensors)%s", weights.path, weights.source, len(taken), kept)


def _check_fit(own: dict[str, torch.Tensor], taken: dict[str, torch.Tensor], fresh: frozenset[str],
               path: Path, *, name: str, num_classes: int, image_size: int) -> None:
    """Raise one WeightsError listing every missing, unexpected and mis-shaped tensor, with the fix."""
    missing = [key for key in own if key not in taken and key not in fresh]
    unexpected = [key for key in taken if key not in own]
    shaped = [key for key in taken if key in own and own[key].shape != taken[key].shape]
    if not (missing or unexpected or shaped):
        return
    parts = [f"{label}: {_few(keys)}" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("other shapes", shaped)) if keys]
    if shaped and not (missing or unexpected) and set(shaped) <= classifier_keys(name, num_classes,
                                                                                 image_size=image_size):
        fix = f"pass --finetune to start the classifier afresh for {num_classes} classes"
    else:
        fix = f"pass weights of --model {name} (torchvision's {name}(num_classes=...).state_dict())"
    raise WeightsError(f"--weights {path} does not fit --model {name} with {num_classes} classes "
                       f"({'; '.join(parts)}); {fix}")


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")
