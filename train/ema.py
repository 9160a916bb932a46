"""An exponential moving average of the model's weights, kept on the model's device.

Follows timm's ``ModelEmaV3`` with ``exclude_buffers=True``: parameters are averaged with one
``_foreach_lerp_`` per update; buffers (BatchNorm running statistics, batch counters) are the
model's own, copied in whenever the average is evaluated or saved (timm copies them at every
update; copying on use gives the same buffers, current ones, for less work). torchvision's
reference instead averages the buffers too; copying keeps each rank's average exactly what a
resumed run rebuilds from rank 0's checkpoint: under DDP each rank's running statistics last saw
its own batch, and no rank carries a history of them that the checkpoint would not hold.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WARMUP_OFFSET = 10  # decay min(D, (1 + t) / (10 + t)) at step t, as TensorFlow's ExponentialMovingAverage


class WeightEma:
    """``avg <- d x avg + (1 - d) x weights`` every ``every`` optimizer steps, ``d = decay ** every``
    (so ``decay`` is per optimizer step whatever the interval); with ``warmup``, the per-step decay
    is ``min(decay, (1 + t) / (10 + t))`` at step t, so early averages forget the initial weights.

    ``model`` must be the bare module (not its DDP or torch.compile wrapper, which share its
    tensors): the average starts as a copy of it, follows it, and its ``state_dict`` has
    torchvision's keys.
    """

    def __init__(self, model: nn.Module, *, decay: float, every: int = 1, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"EMA interval must be a positive number of steps, got {every}")
        self.decay, self.every, self.warmup = decay, every, warmup
        self.source = model
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def weight_at(self, step: int) -> float:
        """The interpolation weight 1 - d of the update after optimizer step ``step`` (1-based)."""
        per_step = self.decay
        if self.warmup:
            per_step = min(per_step, (1 + step) / (WARMUP_OFFSET + step))
        return 1.0 - per_step**self.every

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """After optimizer step ``step``: average the parameters when the step is due; returns
        whether it was. Queued kernels only: the weight is a host float, nothing synchronizes."""
        if step % self.every:
            return False
        averaged = list(self.module.parameters())
        current = [p.detach() for p in self.source.parameters()]
        torch._foreach_lerp_(averaged, current, self.weight_at(step))
        return True

    @torch.no_grad()
    def averaged(self) -> nn.Module:
        """The averaged model, in eval mode, with the model's current buffers, ready to evaluate."""
        for mine, theirs in zip(self.module.buffers(), self.source.buffers(), strict=True):
            mine.copy_(theirs)
        return self.module

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights and the model's buffers, under the model's own ``state_dict`` keys:
        loads into torchvision's GoogLeNet."""
        return self.averaged().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
