"""The training loop on one rank: optimizer steps, evaluation and the epoch's running sums.

The Trainer is handed everything it uses (model, optimizer, schedule, records, stop request) and
builds none of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from train.config import TrainConfig
from train.distributed import DistContext, all_reduce_sum, any_rank, broadcast_buffers
from train.ema import WeightEma
from train.metrics import MetricsLog
from train.mix import BatchMixer
from train.model import bare_model, googlenet_loss
from train.progress import ProgressDisplay
from train.signals import StopRequest
from train.timing import EpochTiming, StepTimer


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0  # optimizer steps done in total
    epoch_step: int = 0  # optimizer steps done in the current epoch
    best_top1: float = -1.0  # best val top-1 of the weights that pick best.pt (the EMA's when on)


@dataclass(frozen=True)
class EpochResult:
    """What one (possibly partial) training epoch produced, reduced over ranks."""

    loss: float
    top1: float
    timing: EpochTiming
    stopped_by: str  # "" (epoch done), "max-steps" or the signal name


class EpochMeter:
    """This rank's running sums for the current epoch: loss, correct predictions and timing.

    Mid-epoch checkpoints carry them, so after a resume the epoch's row still covers every
    step of the epoch, not only those after the resume.
    """

    def __init__(self, device: torch.device, carried: dict[str, Any] | None = None) -> None:
        self.timer = StepTimer(use_cuda=device.type == "cuda")
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        if carried:
            self.loss_sum.fill_(carried["loss_sum"])
            self.correct.fill_(carried["correct"])
            self.timer.restore(carried["timing"])

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Accumulate on the device: no host sync per step. With mixup / cutmix, ``labels`` are
        each mixed sample's dominant label (the one with the larger share)."""
        self.loss_sum += loss.double() * labels.shape[0]
        self.correct += (logits.argmax(dim=1) == labels).sum()

    def state(self) -> dict[str, Any]:
        """Plain numbers for a checkpoint (one device sync)."""
        return {"loss_sum": self.loss_sum.item(), "correct": self.correct.item(),
                "timing": self.timer.state()}

    def result(self, stopped_by: str, device: torch.device, ctx: DistContext) -> EpochResult:
        timing = self.timer.epoch_timing()
        total_loss, total_correct, images = all_reduce_sum(
            [self.loss_sum.item(), self.correct.item(), float(timing.images)], device, ctx)
        return EpochResult(loss=total_loss / max(images, 1), top1=total_correct / max(images, 1),
                           timing=timing, stopped_by=stopped_by)


@dataclass
class Trainer:
    """Runs optimizer steps and evaluations for one model on one rank."""

    cfg: TrainConfig
    ctx: DistContext
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    metrics: MetricsLog
    stop: StopRequest
    to_model_layout: Callable[[torch.Tensor], torch.Tensor]
    mixer: BatchMixer | None = None  # --mixup / --cutmix
    ema: WeightEma | None = None  # --ema-decay
    meter: EpochMeter | None = None  # the current epoch's sums
    carried: dict[str, Any] | None = None  # sums of a resumed partial epoch
    last_lr: float = 0.0  # the learning rate the last optimizer step used (for the step records)

    def _autocast(self) -> torch.autocast:
        """Mixed precision as --amp asks on the GPU; a disabled context on the CPU."""
        dtype = self.cfg.amp_dtype
        return torch.autocast(device_type=self.device.type, dtype=dtype or torch.float32,
                              enabled=dtype is not None)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor,
                   step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimizer step ``step`` (1-based, over the run), then the EMA's update when one is due.

        Returns (loss, main logits, the labels top-1 is scored against: ``labels``, or after
        mixing each sample's dominant label) without synchronizing the device.
        """
        inputs, targets = self.to_model_layout(images), labels
        if self.mixer is not None:  # after the layout change: spatial axes are -2, -1 in either layout
            mixed = self.mixer(inputs, labels)
            inputs, targets, labels = mixed.images, mixed.targets, mixed.labels
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logits = googlenet_loss(self.model(inputs), targets, self.criterion)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # before the schedule moves on
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(step)
        return loss.detach(), logits.detach(), labels

    def _should_stop(self, progress: Progress) -> str:
        if self.cfg.max_steps is not None and progress.step >= self.cfg.max_steps:
            return "max-steps"
        # Polling across ranks costs a host<->device sync under NCCL, so only at log steps.
        if not self.ctx.enabled:
            return self.stop.signal_name if self.stop.requested else ""
        if progress.step % self.cfg.log_every == 0 and any_rank(self.stop.requested, self.device, self.ctx):
            return self.stop.signal_name or "signal on another rank"
        return ""

    def train_epoch(self, loader: Iterable, steps: int, progress: Progress,
                    on_step: Callable[[Progress], None]) -> EpochResult:
        """Train until the loader's epoch ends, --max-steps is reached, or a stop signal arrives."""
        self.model.train()
        self.meter = meter = EpochMeter(self.device, self.carried if progress.epoch_step else None)
        self.carried = None
        display = ProgressDisplay(total=steps, done=progress.epoch_step, desc=f"epoch {progress.epoch}",
                                  enabled=self.ctx.is_main)
        stopped_by = self._should_stop(progress)
        # A run resumed from a checkpoint taken on the epoch's last step (a stop or a crash before
        # the epoch's evaluation) has no step left here: its loader is already past the epoch.
        left = progress.epoch_step < steps and not stopped_by
        for images, labels in (loader if left else []):
            data_s = meter.timer.data_ready()
            meter.timer.compute_begin()
            loss, logits, scored = self.train_step(images, labels, progress.step + 1)
            compute_s = meter.timer.compute_end(labels.shape[0])
            meter.add(loss, logits, scored)
            progress.step += 1
            progress.epoch_step += 1
            display.update()
            if progress.step % self.cfg.log_every == 0:
                self._log_step(progress, loss, data_s=data_s, compute_s=compute_s, display=display)
            on_step(progress)
            stopped_by = self._should_stop(progress)
            if stopped_by:
                break
        display.close()
        return meter.result(stopped_by, self.device, self.ctx)

    def _log_step(self, progress: Progress, loss: torch.Tensor, *, data_s: float, compute_s: float,
                  display: ProgressDisplay) -> None:
        value = loss.item()  # the one sync per log interval
        timer = self.meter.timer
        rate = timer.images / max(1e-9, timer.data_wait + timer.compute) * self.ctx.world_size
        display.report(loss=value, images_per_s=rate)
        self.metrics.step({"step": progress.step, "epoch": progress.epoch, "loss": round(value, 6),
                           "lr": self.last_lr, "data_ms": round(data_s * 1e3, 3),
                           "compute_ms": round(compute_s * 1e3, 3), "images_per_s": round(rate, 1)})

    def evaluated_models(self) -> dict[str, nn.Module]:
        """What each epoch evaluates, by the prefix of its scores: the raw weights, and the EMA's."""
        models = {"val": self.model}
        if self.ema is not None:
            # The EMA takes the model's buffers (BatchNorm statistics). Under DDP each rank's last
            # training forward updated its own; rank 0's are the ones checkpoints save and DDP's
            # next forward broadcasts, so every rank takes those first.
            broadcast_buffers(bare_model(self.model), self.ctx)
            models["ema_val"] = self.ema.averaged()
        return models

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Loss, top-1 and top-5 over every validation image, each counted once across ranks, for
        each of ``evaluated_models()`` (one pass over the data: each batch is decoded once)."""
        models = self.evaluated_models()
        for model in models.values():
            model.eval()
        # Per model: loss, top-1, top-5 sums; then the image count.
        sums = torch.zeros(3 * len(models) + 1, dtype=torch.float64, device=self.device)
        for images, labels in loader:
            inputs = self.to_model_layout(images)
            for index, model in enumerate(models.values()):
                sums[3 * index:3 * index + 3] += self._scores(model, inputs, labels)
            sums[-1] += labels.shape[0]
        totals = all_reduce_sum(sums.tolist(), self.device, self.ctx)
        count = max(totals[-1], 1.0)
        scores: dict[str, float] = {}
        for index, prefix in enumerate(models):
            loss_sum, top1, top5 = totals[3 * index:3 * index + 3]
            scores.update({f"{prefix}_loss": loss_sum / count, f"{prefix}_top1": top1 / count,
                           f"{prefix}_top5": top5 / count})
        scores["val_images"] = int(count)
        return scores

    def _scores(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed loss, top-1 hits and top-5 hits of one batch, on the device."""
        with self._autocast():
            logits = model(inputs)
        loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
        return torch.stack([loss.double(), hits[:, 0].sum().double(), hits.any(dim=1).sum().double()])
