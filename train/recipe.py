"""The training recipe: how a run's settings become its model, optimizer, learning-rate schedule,
loss, mixing and weight average."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR

from train.config import TrainConfig
from train.distributed import DistContext
from train.ema import WeightEma
from train.mix import BatchMixer, mixer_seed
from train.models import build, check_input_sizes
from train.optim import build_optimizer as optimizer_named
from train.optim import parameter_groups
from train.weights import InitialWeights, load_weights


def build_model(num_classes: int, cfg: TrainConfig, device: torch.device,
                initial: InitialWeights | None = None) -> nn.Module:
    """--model on ``device``, the same initial weights on every rank (``initial``'s when given);
    channels_last on the GPU. Every input size the run will feed it is tried first (one image)."""
    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts)
    model = build(cfg.model, num_classes, image_size=cfg.eval_crop)
    if initial is not None:
        load_weights(model, initial, name=cfg.model, num_classes=num_classes, finetune=cfg.finetune,
                     image_size=cfg.eval_crop)
    model = model.to(device)
    if cfg.device == "gpu":
        model = model.to(memory_format=torch.channels_last)
    check_input_sizes(model, cfg.model, input_sizes(cfg), device, channels_last=cfg.device == "gpu")
    return model


def input_sizes(cfg: TrainConfig) -> list[tuple[str, int]]:
    """Every (flag that sets it, size) the run feeds the model: each epoch's training size, the
    evaluation size."""
    train_flag = ("--progressive-resize" if cfg.progressive_resize else
                  "--train-size" if cfg.train_size else "--image-size")
    eval_flag = ("--eval-size" if cfg.eval_size else
                 "--progressive-resize" if cfg.progressive_resize else "--image-size")
    sizes = sorted({cfg.train_crop_at(epoch) for epoch in range(cfg.epochs)})
    return [*((train_flag, size) for size in sizes), (eval_flag, cfg.eval_crop)]


def wrap_model(model: nn.Module, cfg: TrainConfig, ctx: DistContext) -> nn.Module:
    """The model DDP-wrapped, then optionally compiled (after the EMA's copy of the bare model).

    Compiling the DDP module, as PyTorch documents, lets its optimizer split the graph at the
    gradient buckets, so all-reduce overlaps the backward pass.
    """
    if ctx.enabled:
        model = DistributedDataParallel(model, device_ids=[ctx.local_rank] if cfg.device == "gpu" else None)
    if cfg.compile:
        model = torch.compile(model)
    return model


def build_optimizer(model: nn.Module, cfg: TrainConfig, world_size: int) -> torch.optim.Optimizer:
    """--opt at the scaled learning rate; --no-decay-norm-bias puts 1-D tensors (BatchNorm
    scales/shifts, biases) in a group without weight decay (and, for LAMB/LARS, without the
    layer-wise adaptation)."""
    groups = parameter_groups(model, cfg.weight_decay, no_decay_norm_bias=cfg.no_decay_norm_bias)
    return optimizer_named(cfg.opt, groups, lr=cfg.scaled_lr(world_size), momentum=cfg.momentum)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str,
              steps_per_epoch: int, step_epochs: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "step":
        return 0.1 ** (step // (step_epochs * steps_per_epoch))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """Stepped once per optimizer step; spans --epochs even when --max-steps cuts a run short,
    so a run stopped early and resumed follows the same curve as an uninterrupted one."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    return LambdaLR(optimizer, lambda step: lr_factor(
        step, total_steps=total, warmup_steps=warmup, schedule=cfg.schedule,
        steps_per_epoch=steps_per_epoch, step_epochs=cfg.step_epochs))


def build_mixer(cfg: TrainConfig, num_classes: int, rank: int) -> BatchMixer | None:
    """Mixup / cutmix as --mixup, --cutmix, --mix-switch-prob and --mix-prob ask; None when both are off."""
    if not cfg.mixing:
        return None
    return BatchMixer(num_classes=num_classes, mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                      switch_prob=cfg.mix_switch_prob, mix_prob=cfg.mix_prob, seed=mixer_seed(cfg.seed, rank))


def build_ema(cfg: TrainConfig, model: nn.Module) -> WeightEma | None:
    """The weights' EMA, following the bare model (copied before it is wrapped). Every rank keeps
    one: after each step all ranks hold the same weights, so their averages agree. None when
    --ema-decay is 0."""
    if cfg.ema_decay == 0:
        return None
    return WeightEma(model, decay=cfg.ema_decay, every=cfg.ema_every, warmup=cfg.ema_warmup)


def build_criterion(cfg: TrainConfig) -> nn.Module:
    """Cross-entropy with --label-smoothing; it takes class indices or mixed soft targets alike."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def build_grad_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for --amp fp16 on the GPU (bf16 keeps fp32's range); a no-op scaler elsewhere."""
    return torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16" and cfg.device == "gpu")


def model_layout(device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loader's batches as the model takes them: on the GPU, DALI's NHWC storage viewed as
    channels_last NCHW (no copy); on the CPU, the NCHW batches as they are."""
    if device == "gpu":
        return lambda images: images.permute(0, 3, 1, 2)  # NHWC storage -> channels_last NCHW view
    return lambda images: images
