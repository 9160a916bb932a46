"""GoogLeNet construction and the paper's loss with auxiliary heads."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models import GoogLeNetOutputs

AUX_WEIGHT = 0.3  # Szegedy et al. 2015: aux losses are added with weight 0.3


def build_googlenet(num_classes: int, *, aux_logits: bool = True) -> nn.Module:
    """torchvision's GoogLeNet, randomly initialised (no download), with auxiliary heads."""
    # transform_input=False: our pipelines already normalize with ImageNet mean/std.
    return torchvision.models.googlenet(
        weights=None, num_classes=num_classes, aux_logits=aux_logits, init_weights=True,
        transform_input=False,
    )


def bare_model(model: nn.Module) -> nn.Module:
    """The GoogLeNet inside DDP's and torch.compile's wrappers (whose state_dict keys carry
    ``module.`` and ``_orig_mod.`` prefixes)."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule (around DDP)
    inner = getattr(inner, "module", inner)  # DistributedDataParallel
    return getattr(inner, "_orig_mod", inner)  # a compiled module inside DDP


def googlenet_loss(outputs: GoogLeNetOutputs | torch.Tensor, targets: torch.Tensor,
                   criterion: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, main logits): main + 0.3 * (aux1 + aux2) in train mode, main alone in eval.

    ``targets`` are class indices [N] or, after mixup / cutmix, probabilities [N, classes]; the
    auxiliary heads get the same targets as the main one.
    """
    if isinstance(outputs, GoogLeNetOutputs):
        main = criterion(outputs.logits, targets)
        aux = criterion(outputs.aux_logits1, targets) + criterion(outputs.aux_logits2, targets)
        return main + AUX_WEIGHT * aux, outputs.logits
    return criterion(outputs, targets), outputs
