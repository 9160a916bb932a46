"""The optimizers of --opt: SGD and AdamW are torch's; LAMB and LARS are written here, following
timm's ``timm.optim.Lamb`` and ``timm.optim.Lars`` (timm itself pulls in the Hugging Face Hub
client stack, and torch has neither).

- LAMB (You et al. 2019, arXiv 1904.00962), the NVLAMB variant of NVIDIA's FusedLAMB as timm
  implements it: Adam's moments with bias correction, L2 weight decay added to the update, and the
  update scaled per tensor by the trust ratio ||w|| / ||update|| (1 where either norm is 0).
  timm's default global gradient clipping (max_grad_norm=1) is not inside the optimizer here:
  --clip-grad 1 does the same before every step.
- LARS (You et al. 2017, arXiv 1708.03888), as timm and NVIDIA's LARC: the gradient plus weight
  decay scaled per tensor by trust_coeff x ||w|| / (||g|| + wd x ||w|| + eps), then SGD momentum.

Both adapt only tensors with weight decay (timm's ``always_adapt=False``): with
--no-decay-norm-bias, BatchNorm parameters and biases take the plain update, as the papers' recipes
do. Both update every tensor of a group with torch's multi-tensor (``_foreach``) kernels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

LAMB_BETAS = (0.9, 0.999)
LAMB_EPS = 1e-6  # timm's (and FusedLAMB's) default; Adam's is 1e-8
ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-8
LARS_TRUST = 1e-3  # trust coefficient eta of the LARS paper
LARS_EPS = 1e-8


def _gradients(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of ``params`` (the callers keep only tensors that have one)."""
    grads = []
    for p in params:
        assert p.grad is not None
        grads.append(p.grad)
    return grads


def _trust(numerators: Sequence[torch.Tensor], denominators: Sequence[torch.Tensor],
           w_norms: Sequence[torch.Tensor], other_norms: Sequence[torch.Tensor],
           scale: float = 1.0) -> list[torch.Tensor]:
    """Per tensor: scale x numerator / denominator, or 1 where its weight norm or its other norm
    (the update's for LAMB, the gradient's for LARS) is 0, as timm computes the trust ratio."""
    ratios = []
    for num, den, w, other in zip(numerators, denominators, w_norms, other_norms, strict=True):
        ratio = scale * num / den
        ratios.append(torch.where((w > 0) & (other > 0), ratio, torch.ones_like(ratio)))
    return ratios


class _LayerwiseOptimizer(torch.optim.Optimizer):
    """The step LAMB and LARS share: each group's parameters that have a gradient, updated together."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError


class Lamb(_LayerwiseOptimizer):
    """LAMB with bias correction and gradient averaging, as ``timm.optim.Lamb`` (decoupled decay,
    trust clipping and caution off, as timm's defaults)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, *, betas: tuple[float, float] = LAMB_BETAS,
                 eps: float = LAMB_EPS, weight_decay: float = 0.01) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid LAMB settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        grads = _gradients(params)
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        for state in states:
            state["step"] += 1
        step = float(states[0]["step"])  # host-side counter: no device sync
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = b1 m + (1 - b1) g
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)  # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
        torch._foreach_add_(denom, group["eps"])
        updates = torch._foreach_div(exp_avgs, denom)
        torch._foreach_div_(updates, 1 - beta1**step)  # m_hat / (sqrt(v_hat) + eps)
        if group["weight_decay"] != 0:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            w_norms, u_norms = torch._foreach_norm(params), torch._foreach_norm(updates)
            torch._foreach_mul_(updates, _trust(w_norms, u_norms, w_norms, u_norms))
        torch._foreach_add_(params, updates, alpha=-group["lr"])


class Lars(_LayerwiseOptimizer):
    """LARS: SGD with momentum on layer-wise scaled gradients, as ``timm.optim.Lars`` (no LARC trust
    clipping, no Nesterov, no dampening: timm's defaults)."""

    def __init__(self, params: Iterable[Any], lr: float = 1.0, *, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coeff: float = LARS_TRUST, eps: float = LARS_EPS) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coeff <= 0:
            raise ValueError(f"invalid LARS settings: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}, trust_coeff={trust_coeff}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "trust_coeff": trust_coeff, "eps": eps})

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = _gradients(params)
        decay = group["weight_decay"]
        if decay != 0:
            w_norms = torch._foreach_norm(params)
            g_norms = torch._foreach_norm(grads)
            denominators = torch._foreach_add(g_norms, torch._foreach_mul(w_norms, decay))
            torch._foreach_add_(denominators, group["eps"])
            ratios = _trust(w_norms, denominators, w_norms, g_norms, scale=group["trust_coeff"])
            grads = list(torch._foreach_add(grads, params, alpha=decay))  # p.grad is left as it is
            torch._foreach_mul_(grads, ratios)
        if group["momentum"] != 0:
            buffers = []
            for p, grad in zip(params, grads, strict=True):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.detach().clone()  # the first step: the gradient
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                buffers.append(state["momentum_buffer"])
            grads = buffers
        torch._foreach_add_(params, grads, alpha=-group["lr"])


def parameter_groups(model: nn.Module, weight_decay: float, *,
                     no_decay_norm_bias: bool) -> list[dict[str, Any]]:
    """One group with weight decay; with ``no_decay_norm_bias`` the 1-D tensors (BatchNorm scales
    and shifts, biases) in a second group without it."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_norm_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def build_optimizer(name: str, groups: list[dict[str, Any]], *, lr: float,
                    momentum: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` (sgd, adamw, lamb, lars) over ``groups`` (each with its weight decay)."""
    if name == "sgd":  # no Nesterov, as the GoogLeNet/ResNet references
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS, eps=ADAMW_EPS)
    if name == "lamb":
        return Lamb(groups, lr=lr)
    if name == "lars":
        return Lars(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose from sgd, adamw, lamb, lars")


def state_copies(name: str) -> int:
    """Tensors of optimizer state per weight (SGD/LARS: momentum; AdamW/LAMB: two moments)."""
    return 2 if name in ("adamw", "lamb") else 1
