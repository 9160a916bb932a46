"""SGD with optional no-decay groups, and a per-step warm-up + cosine/step schedule."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_norm_bias: bool) -> list[dict]:
    """One group for all parameters, or two: decayed weights, and undecayed norms/biases."""
    if decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad],
                 "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            # 1-D tensors are BatchNorm scales/shifts and biases.
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, *, lr: float, momentum: float, weight_decay: float,
                    decay_norm_bias: bool) -> torch.optim.SGD:
    """SGD with Nesterov off, as in the GoogLeNet/ResNet references."""
    groups = parameter_groups(model, weight_decay, decay_norm_bias=decay_norm_bias)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str,
              steps_per_epoch: int, step_epochs: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "step":
        return 0.1 ** (step // (step_epochs * steps_per_epoch))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float, schedule: str, step_epochs: int) -> LambdaLR:
    """Stepped once per optimizer step; spans ``epochs`` even when --max-steps cuts a run short,
    so a run stopped early and resumed follows the same curve as an uninterrupted one."""
    total = epochs * steps_per_epoch
    warmup = min(total, round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        return lr_factor(step, total_steps=total, warmup_steps=warmup, schedule=schedule,
                         steps_per_epoch=steps_per_epoch, step_epochs=step_epochs)

    return LambdaLR(optimizer, factor)
