"""The optimizers of --opt: LAMB and LARS against their papers' formulas (as timm implements them),
and every optimizer's state continuing exactly from a state_dict (a checkpoint)."""

from __future__ import annotations

import copy

import pytest
import torch

from train.optim import Lamb, Lars, build_optimizer


def _params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(4, 3, generator=gen).requires_grad_(), torch.randn(3, generator=gen).requires_grad_()]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen)]


def test_lamb_follows_the_paper() -> None:
    """Three LAMB steps against the formula written out: Adam's bias-corrected moments, L2 decay in
    the update, the update scaled by ||w|| / ||update|| where the group decays; the group without
    decay takes the plain Adam step (timm's always_adapt=False)."""
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.05
    params = _params()
    expected = [p.detach().clone() for p in params]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in expected]
    opt = Lamb([{"params": params[:1], "weight_decay": wd}, {"params": params[1:], "weight_decay": 0.0}],
               lr=lr, betas=(b1, b2), eps=eps)
    for step in range(1, 4):
        grads = _grads(step)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for i, (w, g) in enumerate(zip(expected, grads, strict=True)):
            m, v = moments[i]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            moments[i] = (m, v)
            update = (m / (1 - b1**step)) / ((v / (1 - b2**step)).sqrt() + eps)
            if i == 0:
                update = update + wd * w
                update = update * (w.norm() / update.norm())
            expected[i] = w - lr * update
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)


def test_lars_follows_the_paper() -> None:
    """Three LARS steps against the formula: (g + wd w) x eta ||w|| / (||g|| + wd ||w|| + eps), then
    SGD momentum (the first buffer is the scaled gradient); no scaling without decay; a tensor with
    zero gradient keeps ratio 1."""
    lr, mom, wd, eta, eps = 0.5, 0.9, 0.01, 1e-3, 1e-8
    params = _params()
    expected = [p.detach().clone() for p in params]
    buffers: list[torch.Tensor | None] = [None, None]
    opt = Lars([{"params": params[:1], "weight_decay": wd}, {"params": params[1:], "weight_decay": 0.0}],
               lr=lr, momentum=mom, trust_coeff=eta, eps=eps)
    for step in range(1, 4):
        grads = _grads(step)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for i, (w, grad) in enumerate(zip(expected, grads, strict=True)):
            g = grad if i else (grad + wd * w) * (eta * w.norm() / (grad.norm() + wd * w.norm() + eps))
            buffers[i] = g.clone() if buffers[i] is None else mom * buffers[i] + g
            expected[i] = w - lr * buffers[i]
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)
    zero = torch.ones(3, requires_grad=True)
    zero.grad = torch.zeros(3)
    Lars([{"params": [zero], "weight_decay": wd}], lr=lr, momentum=0.0).step()
    torch.testing.assert_close(zero.detach(), torch.full((3,), 1 - lr * wd))  # ratio 1: only decay moved it


@pytest.mark.parametrize("name", ["lamb", "lars", "adamw"])
def test_optimizer_state_round_trips(name: str) -> None:
    """A state_dict saved after two steps and loaded into a fresh optimizer continues exactly."""
    def run(steps: range, opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
        for step in steps:
            for p, g in zip(params, _grads(step), strict=True):
                p.grad = g
            opt.step()

    def fresh() -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
        params = _params()
        return params, build_optimizer(name, [{"params": params, "weight_decay": 0.01}], lr=0.1, momentum=0.9)

    straight, opt = fresh()
    run(range(4), opt, straight)
    first, opt = fresh()
    run(range(2), opt, first)
    state = copy.deepcopy(opt.state_dict())  # as a checkpoint holds it
    resumed = build_optimizer(name, [{"params": first, "weight_decay": 0.01}], lr=0.1, momentum=0.9)
    resumed.load_state_dict(state)
    run(range(2, 4), resumed, first)
    for a, b in zip(straight, first, strict=True):
        assert torch.equal(a, b)
    if name == "adamw":
        assert isinstance(opt, torch.optim.AdamW)
