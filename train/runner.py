"""Set up a training run (data, loaders, model, optimizer, resume) and drive its epochs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dali_pipelines import (
    DaliLoader,
    DataSource,
    ImageFolderData,
    PipelineConfig,
    default_cache_dir,
    default_num_threads,
    make_loader,
    open_source,
    prepare_data,
)
from train.checkpoint import (
    FORMAT_VERSION,
    clean_state_dict,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_atomic,
)
from train.config import TrainConfig
from train.distributed import DistContext, barrier, gather_to_main, init_distributed, shutdown
from train.metrics import MetricsLog
from train.model import build_googlenet
from train.optim import build_optimizer, build_scheduler
from train.signals import StopRequest
from train.trainer import EpochResult, Progress, Trainer

_logger = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything a run holds between epochs."""

    cfg: TrainConfig
    ctx: DistContext
    trainer: Trainer
    train_loader: DaliLoader
    val_loader: DaliLoader
    classes: tuple[str, ...]
    progress: Progress
    run_dir: Path

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def pipeline_config(cfg: TrainConfig, ctx: DistContext) -> PipelineConfig:
    """DALI settings for this rank: its shard, its GPU, NHWC on the GPU for channels_last."""
    threads = cfg.workers or max(1, default_num_threads() // max(1, _ranks_on_node(ctx)))
    return PipelineConfig(
        batch_size=cfg.batch_size, num_threads=threads, device=cfg.device, device_id=ctx.local_rank,
        crop_size=cfg.image_size, resize_size=cfg.resize_size, seed=cfg.seed,
        shard_id=ctx.rank, num_shards=ctx.world_size,
        # NHWC batches viewed as NCHW are channels_last tensors: no transpose before the convs.
        layout="NHWC" if cfg.device == "gpu" else "NCHW",
    )


def _ranks_on_node(ctx: DistContext) -> int:
    """Processes sharing this node's cores (torchrun sets LOCAL_WORLD_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ctx.enabled else 1


def open_split(cfg: TrainConfig, split: str, ctx: DistContext) -> DataSource:
    """The train/ or val/ part of --data, verified (cached) before any graph is built.

    Shards were verified when they were written; loose files are checked here because one
    undecodable JPEG would kill the DALI pipeline hours into an epoch. Rank 0 verifies first
    so the other ranks find every result in the cache.
    """
    data = open_source(cfg.data, fmt=cfg.format, split=split)
    if not isinstance(data, ImageFolderData):
        return data
    for turn in range(2):
        if (turn == 0) == ctx.is_main:
            data = prepare_data(data, on_bad_file=cfg.on_bad_file, cache_dir=default_cache_dir())
        barrier(ctx)
    return data


def _model_layout(device: str):
    if device == "gpu":
        return lambda images: images.permute(0, 3, 1, 2)  # NHWC storage -> channels_last NCHW view
    return lambda images: images


def build_model(num_classes: int, cfg: TrainConfig, ctx: DistContext, device: torch.device) -> nn.Module:
    """GoogLeNet on ``device``; channels_last on the GPU, optionally compiled, DDP-wrapped."""
    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts)
    model = build_googlenet(num_classes).to(device)
    if cfg.device == "gpu":
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model = torch.compile(model)
    if ctx.enabled:
        model = DistributedDataParallel(model, device_ids=[ctx.local_rank] if cfg.device == "gpu" else None)
    return model


def setup(cfg: TrainConfig, ctx: DistContext, stop: StopRequest) -> Run:
    """Data, loaders, model and optimizer, restored from --resume when given."""
    device = torch.device("cuda", ctx.local_rank) if cfg.device == "gpu" else torch.device("cpu")
    payload = load_checkpoint(Path(cfg.resume)) if cfg.resume else None
    train_data = open_split(cfg, "train", ctx)
    val_data = open_split(cfg, "val", ctx)
    if payload is not None:
        _check_resumable(payload, cfg, ctx, train_data.classes)
    pipe_cfg = pipeline_config(cfg, ctx)
    train_loader = make_loader(train_data, pipe_cfg, train=True,
                               checkpoint=payload["loader_state"][ctx.rank] if payload else None)
    val_loader = make_loader(val_data, pipe_cfg, train=False)
    model = build_model(len(train_data.classes), cfg, ctx, device)
    optimizer = build_optimizer(model, lr=cfg.scaled_lr(ctx.world_size), momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, decay_norm_bias=not cfg.no_decay_norm_bias)
    scheduler = build_scheduler(optimizer, epochs=cfg.epochs, steps_per_epoch=len(train_loader),
                                warmup_epochs=cfg.warmup_epochs, schedule=cfg.schedule,
                                step_epochs=cfg.step_epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16" and cfg.device == "gpu")
    run_dir = Path(cfg.out)
    trainer = Trainer(cfg=cfg, ctx=ctx, device=device, model=model, optimizer=optimizer,
                      scheduler=scheduler, scaler=scaler,
                      criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                      metrics=MetricsLog(run_dir, enabled=ctx.is_main), stop=stop,
                      to_model_layout=_model_layout(cfg.device))
    progress = Progress()
    if payload is not None:
        progress = _restore(payload, trainer, ctx.rank)
    # Dropout differs per rank; set after restore so a resumed run continues the same stream.
    if payload is None:
        torch.manual_seed(cfg.seed + 1000 * (ctx.rank + 1))
    return Run(cfg=cfg, ctx=ctx, trainer=trainer, train_loader=train_loader, val_loader=val_loader,
               classes=tuple(train_data.classes), progress=progress, run_dir=run_dir)


def _check_resumable(payload: dict[str, Any], cfg: TrainConfig, ctx: DistContext,
                     classes: tuple[str, ...]) -> None:
    """An exact resume needs the same data, ranks and sample-order settings as the saved run."""
    if tuple(payload["classes"]) != tuple(classes):
        raise ValueError(f"--resume {cfg.resume} was trained on classes {payload['classes'][:5]}..., "
                         f"but --data {cfg.data} has {classes[:5]}...; use the same data set")
    saved_ranks = len(payload["loader_state"])
    if saved_ranks != ctx.world_size:
        raise ValueError(f"--resume {cfg.resume} was written by {saved_ranks} process(es), this run has "
                         f"{ctx.world_size}; resume with the same torchrun --nnodes x --nproc_per_node")
    for flag in ("batch_size", "seed", "image_size", "epochs"):
        saved, now = payload["config"][flag], getattr(cfg, flag)
        if saved != now:
            raise ValueError(f"--resume {cfg.resume} was written with --{flag.replace('_', '-')} {saved}, "
                             f"this run has {now}; pass the same value to continue the run exactly")


def _restore(payload: dict[str, Any], trainer: Trainer, rank: int) -> Progress:
    model = getattr(trainer.model, "module", trainer.model)
    getattr(model, "_orig_mod", model).load_state_dict(payload["model"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    trainer.scheduler.load_state_dict(payload["scheduler"])
    if payload.get("scaler"):
        trainer.scaler.load_state_dict(payload["scaler"])
    restore_rng(payload["rng"][rank])
    return Progress(epoch=payload["epoch"], step=payload["step"], epoch_step=payload["epoch_step"],
                    best_top1=payload.get("best_top1", -1.0))


def save_checkpoint(run: Run, name: str) -> Path:
    """Write checkpoints/<name>.pt on rank 0 (every rank must call: loader state is per rank)."""
    path = run.checkpoint_dir / f"{name}.pt"
    # Each rank has its own shard position, augmentation RNG and dropout RNG: keep them all.
    per_rank = gather_to_main((run.train_loader.state(), rng_state()), run.ctx)
    if not run.ctx.is_main:
        return path
    trainer, progress = run.trainer, run.progress
    payload = {
        "format_version": FORMAT_VERSION, "model": clean_state_dict(trainer.model),
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(), "epoch": progress.epoch, "step": progress.step,
        "epoch_step": progress.epoch_step, "best_top1": progress.best_top1,
        "loader_state": [loader for loader, _ in per_rank], "rng": [rng for _, rng in per_rank],
        "config": run.cfg.to_dict(), "classes": list(run.classes),
    }
    save_atomic(payload, path)
    return path


def run(cfg: TrainConfig) -> int:
    """Train as configured; returns the process exit code (0 also after a graceful stop)."""
    ctx = init_distributed(cfg.device)
    stop = StopRequest().install()
    try:
        state = setup(cfg, ctx, stop)
        try:
            _announce(state)
            return _epochs(state)
        finally:
            state.trainer.metrics.close()
    finally:
        stop.uninstall()
        shutdown(ctx)


def _announce(state: Run) -> None:
    cfg, ctx = state.cfg, state.ctx
    if not ctx.is_main:
        return
    state.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(state.run_dir / "config.json", world_size=ctx.world_size,
             global_batch=cfg.batch_size * ctx.world_size, scaled_lr=cfg.scaled_lr(ctx.world_size),
             steps_per_epoch=len(state.train_loader), classes=list(state.classes),
             pipeline=state.train_loader.cfg.to_dict())
    where = f"GPU {torch.cuda.get_device_name(ctx.local_rank)}" if cfg.device == "gpu" else "CPU"
    print(f"device: {cfg.device} ({where}); ranks: {ctx.world_size}; classes: {len(state.classes)}; "
          f"steps/epoch: {len(state.train_loader)}; global batch: {cfg.batch_size * ctx.world_size}; "
          f"lr: {cfg.scaled_lr(ctx.world_size):.4g}", flush=True)
    if cfg.resume:
        p = state.progress
        print(f"resumed from {cfg.resume}: epoch {p.epoch}, step {p.step}", flush=True)


def _epochs(state: Run) -> int:
    cfg, progress, trainer = state.cfg, state.progress, state.trainer

    def on_step(p: Progress) -> None:
        if p.step % cfg.save_every == 0:
            save_checkpoint(state, "last")

    while progress.epoch < cfg.epochs:
        result = trainer.train_epoch(state.train_loader, len(state.train_loader), progress, on_step)
        if result.stopped_by and result.stopped_by != "max-steps":
            path = save_checkpoint(state, "last")
            if state.ctx.is_main:
                print(f"stopped by {result.stopped_by} at step {progress.step}; resume with: "
                      f"python -m train --resume {path} (plus the same --data and settings)", flush=True)
            return 0
        _end_epoch(state, result)
        if result.stopped_by:
            break
    return 0


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 2)


def _end_epoch(state: Run, result: EpochResult) -> None:
    """Evaluate, log the epoch, and checkpoint (last, and best by top-1)."""
    progress, trainer = state.progress, state.trainer
    scores = trainer.evaluate(state.val_loader)
    timing = result.timing
    row = {"epoch": progress.epoch, "step": progress.step, "train_loss": round(result.loss, 6),
           "train_top1": round(result.top1, 6), **{k: round(v, 6) for k, v in scores.items()},
           "images_per_s": round(timing.images_per_second * state.ctx.world_size, 1),
           "data_wait_pct": round(100 * timing.data_wait_fraction, 2),
           "gpu_idle_pct": _percent(timing.gpu_idle_fraction),
           "seconds": round(timing.seconds, 2)}
    trainer.metrics.epoch(row)
    if state.ctx.is_main:
        idle = "n/a" if row["gpu_idle_pct"] is None else f"{row['gpu_idle_pct']:.1f}%"
        print(f"epoch {progress.epoch} step {progress.step}: train loss {result.loss:.4f} "
              f"top1 {result.top1:.3f} | val loss {scores['val_loss']:.4f} top1 {scores['val_top1']:.3f} "
              f"top5 {scores['val_top5']:.3f} ({scores['val_images']} images) | "
              f"{row['images_per_s']:.0f} img/s, data wait {row['data_wait_pct']:.1f}%, GPU idle {idle}",
              flush=True)
    if not result.stopped_by:
        progress.epoch += 1
        progress.epoch_step = 0
    improved = scores["val_top1"] > progress.best_top1
    progress.best_top1 = max(progress.best_top1, scores["val_top1"])
    save_checkpoint(state, "last")
    if improved:
        save_checkpoint(state, "best")
