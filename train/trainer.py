"""The epoch loop and evaluation: steps, timing, metrics; no set-up and no file handling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from train.config import TrainConfig
from train.distributed import DistContext, all_reduce_sum, any_rank
from train.metrics import MetricsLog
from train.model import googlenet_loss
from train.signals import StopRequest
from train.timing import EpochTiming, StepTimer

_logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0  # optimizer steps done in total
    epoch_step: int = 0  # optimizer steps done in the current epoch
    best_top1: float = -1.0


@dataclass(frozen=True)
class EpochResult:
    """What one (possibly partial) training epoch produced, reduced over ranks."""

    loss: float
    top1: float
    timing: EpochTiming
    stopped_by: str  # "" (epoch done), "max-steps" or the signal name


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

    def _autocast(self) -> torch.autocast:
        """Mixed precision as --amp asks on the GPU; a disabled context on the CPU."""
        dtype = self.cfg.amp_dtype
        return torch.autocast(device_type=self.device.type, dtype=dtype or torch.float32,
                              enabled=dtype is not None)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (loss, main logits) without synchronizing the device."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logits = googlenet_loss(self.model(self.to_model_layout(images)), labels, self.criterion)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach(), logits.detach()

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
        timer = StepTimer(use_cuda=self.device.type == "cuda")
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        bar = tqdm(total=steps, initial=progress.epoch_step, desc=f"epoch {progress.epoch}",
                   disable=not self.ctx.is_main, unit="step", dynamic_ncols=True, leave=False)
        stopped_by = self._should_stop(progress)
        for images, labels in ([] if stopped_by else loader):
            data_s = timer.data_ready()
            timer.compute_begin()
            loss, logits = self.train_step(images, labels)
            compute_s = timer.compute_end(labels.shape[0])
            loss_sum += loss.double() * labels.shape[0]
            correct += (logits.argmax(dim=1) == labels).sum()
            progress.step += 1
            progress.epoch_step += 1
            bar.update(1)
            if progress.step % self.cfg.log_every == 0:
                self._log_step(progress, loss, data_s=data_s, compute_s=compute_s, timer=timer, bar=bar)
            on_step(progress)
            stopped_by = self._should_stop(progress)
            if stopped_by:
                break
        bar.close()
        timing = timer.epoch_timing()
        total_loss, total_correct, images = all_reduce_sum(
            [loss_sum.item(), correct.item(), float(timing.images)], self.device, self.ctx)
        return EpochResult(loss=total_loss / max(images, 1), top1=total_correct / max(images, 1),
                           timing=timing, stopped_by=stopped_by)

    def _log_step(self, progress: Progress, loss: torch.Tensor, *, data_s: float, compute_s: float,
                  timer: StepTimer, bar: tqdm) -> None:
        value = loss.item()  # the one sync per log interval
        rate = timer.images / max(1e-9, timer.data_wait + timer.compute)
        bar.set_postfix(loss=f"{value:.3f}", img_s=f"{rate * self.ctx.world_size:.0f}")
        self.metrics.step({"step": progress.step, "epoch": progress.epoch, "loss": round(value, 6),
                           "lr": self.scheduler.get_last_lr()[0], "data_ms": round(data_s * 1e3, 3),
                           "compute_ms": round(compute_s * 1e3, 3),
                           "images_per_s": round(rate * self.ctx.world_size, 1)})

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Loss, top-1 and top-5 over every validation image, each counted once across ranks."""
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top1, top5, count
        for images, labels in loader:
            with self._autocast():
                logits = self.model(self.to_model_layout(images))
            loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == labels[:, None]
            sums += torch.stack([loss.double(), hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                                 torch.tensor(labels.shape[0], dtype=torch.float64, device=self.device)])
        loss_sum, top1, top5, count = all_reduce_sum(sums.tolist(), self.device, self.ctx)
        count = max(count, 1.0)
        return {"val_loss": loss_sum / count, "val_top1": top1 / count, "val_top5": top5 / count,
                "val_images": int(count)}
