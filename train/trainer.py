"""The training loop on one rank: optimizer steps, evaluation and the epoch's running sums.

The Trainer is handed everything it uses (model, optimizer, schedule, records, stop request) and
builds none of it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from train.config import TrainConfig
from train.distributed import DistContext, all_reduce_sum, any_rank, broadcast_buffers
from train.ema import WeightEma
from train.metrics import MetricsLog
from train.mix import BatchMixer
from train.model import bare_model
from train.models import LossParts, model_loss
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

    loss: float  # the main head's, as the validation loss
    aux_loss: float | None  # the auxiliary heads' weighted share of what was optimized; None without
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
        self.aux_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.has_aux = False
        if carried:
            self.loss_sum.fill_(carried["loss_sum"])
            # A checkpoint of the version before the aux column has no aux_sum: its loss_sum holds
            # the epoch's total so far (main + aux), so that one epoch's row mixes the two.
            self.aux_sum.fill_(carried.get("aux_sum", 0.0))
            self.correct.fill_(carried["correct"])
            self.timer.restore(carried["timing"])

    def add(self, loss: LossParts, labels: torch.Tensor) -> None:
        """Accumulate on the device: no host sync per step. With mixup / cutmix, ``labels`` are
        each mixed sample's dominant label (the one with the larger share)."""
        self.loss_sum += loss.main.detach().double() * labels.shape[0]
        if loss.aux is not None:
            self.has_aux = True
            self.aux_sum += loss.aux.detach().double() * labels.shape[0]
        self.correct += (loss.logits.argmax(dim=1) == labels).sum()

    def state(self) -> dict[str, Any]:
        """Plain numbers for a checkpoint (one device sync)."""
        return {"loss_sum": self.loss_sum.item(), "aux_sum": self.aux_sum.item(),
                "correct": self.correct.item(), "timing": self.timer.state()}

    def result(self, stopped_by: str, device: torch.device, ctx: DistContext, *, aux: bool) -> EpochResult:
        timing = self.timer.epoch_timing()
        sums = [self.loss_sum.item(), self.aux_sum.item(), self.correct.item(), float(timing.images)]
        total_loss, total_aux, total_correct, images = all_reduce_sum(sums, device, ctx)
        count = max(images, 1)
        return EpochResult(loss=total_loss / count, aux_loss=total_aux / count if aux else None,
                           top1=total_correct / count, timing=timing, stopped_by=stopped_by)


@dataclass
class _Interval:
    """The optimizer steps since the previous steps.csv row (or the epoch's start)."""

    steps: int = 0


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
        """Optimizer step ``step`` (1-based, over the run) on one batch, then the EMA's update when
        one is due. Returns (the main head's loss, its logits, the labels top-1 is scored against:
        ``labels``, or after mixing each sample's dominant label) without synchronizing the device."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, scored = self.forward_backward(images, labels, share=1.0, sync=True)
        self.optimizer_step(step)
        return loss.main.detach(), loss.logits.detach(), scored

    def forward_backward(self, images: torch.Tensor, labels: torch.Tensor, *, share: float,
                         sync: bool) -> tuple[LossParts, torch.Tensor]:
        """Forward and backward of one batch, its gradient weighted by ``share`` of the optimizer
        step's (1 / --accum-steps); ``sync=False`` skips DDP's gradient all-reduce (a batch that
        is not the step's last). Returns the loss's parts and the labels top-1 is scored against."""
        inputs, targets = self.to_model_layout(images), labels
        if self.mixer is not None:  # after the layout change: spatial axes are -2, -1 in either layout
            mixed = self.mixer(inputs, labels)
            inputs, targets, labels = mixed.images, mixed.targets, mixed.labels
        with contextlib.nullcontext() if sync else self._no_sync():  # forward and backward inside it
            with self._autocast():
                loss = model_loss(self.model(inputs), targets, self.criterion)
            self.scaler.scale(loss.total * share).backward()
        return loss, labels

    def _no_sync(self) -> contextlib.AbstractContextManager:
        """DDP's no_sync() (gradients stay local until the step's last batch); nothing without DDP."""
        ddp = getattr(self.model, "_orig_mod", self.model)  # torch.compile wraps the DDP module
        return ddp.no_sync() if isinstance(ddp, DistributedDataParallel) else contextlib.nullcontext()

    def optimizer_step(self, step: int) -> None:
        """Clip (--clip-grad, on unscaled gradients), step, schedule and average (EMA), queued on
        the device: nothing here waits for it (the fp16 scaler's inf check aside)."""
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # before the schedule moves on
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(step)

    def _should_stop(self, progress: Progress) -> str:
        if self.cfg.max_steps is not None and progress.step >= self.cfg.max_steps:
            return "max-steps"
        # Polling across ranks costs a host<->device sync under NCCL, so only at log steps.
        if not self.ctx.enabled:
            return self.stop.signal_name if self.stop.requested else ""
        if progress.step % self.cfg.log_every == 0 and any_rank(self.stop.requested, self.device, self.ctx):
            return self.stop.signal_name or "signal on another rank"
        return ""

    def train_epoch(self, loader: Iterable, batches: int, progress: Progress,
                    on_step: Callable[[Progress], None]) -> EpochResult:
        """Train until the loader's epoch ends, --max-steps is reached, or a stop signal arrives.

        ``batches`` is the loader's per epoch; each optimizer step takes --accum-steps of them, and
        the few left over at the epoch's end (fewer than --accum-steps) are read and not trained
        on, right after its last step, so every checkpoint sits on a step boundary.
        """
        accum = self.cfg.accum_steps
        steps = batches // accum
        self.model.train()
        self.meter = meter = EpochMeter(self.device, self.carried if progress.epoch_step else None)
        self.carried = None
        display = ProgressDisplay(total=steps, done=progress.epoch_step, desc=f"epoch {progress.epoch}",
                                  enabled=self.ctx.is_main)
        stopped_by = self._should_stop(progress)
        # A run resumed from a checkpoint taken on the epoch's last step (a stop or a crash before
        # the epoch's evaluation) has no step left here: its loader is already past the epoch.
        left = progress.epoch_step < steps and not stopped_by
        stream = iter(loader if left else [])
        interval = _Interval()
        for step_loss in self._steps(stream, meter, accum, progress):
            progress.step += 1
            progress.epoch_step += 1
            interval.steps += 1
            if progress.epoch_step == steps:
                self._skip(stream, batches - steps * accum, meter)
            display.update()
            if progress.step % self.cfg.log_every == 0:
                self._log_step(progress, step_loss, interval, display=display)
                interval = _Interval()
            on_step(progress)
            stopped_by = self._should_stop(progress)
            if stopped_by:
                break
        display.close()
        return meter.result(stopped_by, self.device, self.ctx, aux=meter.has_aux)

    def _steps(self, stream: Iterator, meter: EpochMeter, accum: int,
               progress: Progress) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """One optimizer step per ``accum`` batches of ``stream`` (step ``progress.step + 1``, the
        caller counting it); yields each step's (main loss, aux share), means over its batches, on
        the device. Timing covers every batch."""
        while True:
            main_sum: torch.Tensor | None = None
            aux_sum: torch.Tensor | None = None
            for index in range(accum):
                batch = next(stream, None)
                if batch is None:
                    return
                images, labels = batch
                meter.timer.data_ready()
                meter.timer.compute_begin()
                if index == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                last = index == accum - 1
                loss, scored = self.forward_backward(images, labels, share=1.0 / accum, sync=last)
                if last:
                    self.optimizer_step(progress.step + 1)
                meter.timer.compute_end(labels.shape[0])
                meter.add(loss, scored)
                main_sum = loss.main.detach() if main_sum is None else main_sum + loss.main.detach()
                if loss.aux is not None:
                    aux_sum = loss.aux.detach() if aux_sum is None else aux_sum + loss.aux.detach()
            assert main_sum is not None
            yield main_sum / accum, None if aux_sum is None else aux_sum / accum

    def _skip(self, stream: Iterator, count: int, meter: EpochMeter) -> None:
        """Read ``count`` batches without training on them (the epoch's remainder under --accum-steps):
        the loader then stands at the epoch's end, as after an epoch without a remainder."""
        for _ in range(count):
            next(stream)
            meter.timer.data_ready()  # their decoding is time the epoch spent waiting for data

    def _log_step(self, progress: Progress, step_loss: tuple[torch.Tensor, torch.Tensor | None],
                  interval: _Interval, *, display: ProgressDisplay) -> None:
        """One steps.csv row: the step's losses and learning rate; the time per step and the
        images/s over the steps since the previous row (one span for all three)."""
        main, aux = step_loss
        value = main.item()  # the one sync per log interval
        images, data_s, compute_s = self.meter.timer.interval()
        steps = max(interval.steps, 1)
        rate = images / max(1e-9, data_s + compute_s) * self.ctx.world_size
        display.report(loss=value, images_per_s=rate)
        self.metrics.step({"step": progress.step, "epoch": progress.epoch, "loss": round(value, 6),
                           "aux_loss": None if aux is None else round(aux.item(), 6), "lr": self.last_lr,
                           "data_ms": round(data_s * 1e3 / steps, 3),
                           "compute_ms": round(compute_s * 1e3 / steps, 3),
                           "images_per_s": round(rate, 1)})

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
