"""The Run: everything a run holds between epochs, and its checkpoints (saving and restoring it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dali_pipelines import DaliLoader
from train.checkpoint import (
    FORMAT_VERSION,
    LAST,
    OPTIONAL_DATA,
    OPTIONAL_EMA,
    OPTIONAL_MIX_RNG,
    OPTIONAL_TUNING,
    PREVIOUS,
    clean_state_dict,
    restore_rng,
    rng_state,
    save_atomic,
)
from train.config import TrainConfig
from train.distributed import DistContext, gather_to_main
from train.model import bare_model
from train.resolution import SizedTrainLoader
from train.trainer import Progress, Trainer
from train.tuning import LoaderTuning


@dataclass
class Run:
    """Everything a run holds between epochs."""

    cfg: TrainConfig
    ctx: DistContext
    trainer: Trainer
    train_loader: DaliLoader
    val_loader: DaliLoader
    classes: tuple[str, ...]
    train_files: int
    run_id: str
    progress: Progress
    out: Path
    sized_train: SizedTrainLoader  # builds train_loader at each epoch's size
    tuning: LoaderTuning | None = None  # --tune: the settings the loaders were built with
    data_identity: dict[str, Any] | None = None  # the training data's identity record (sources.identity)
    saved_step: int | None = None  # the step of the last.pt this process wrote last

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: the loader's batches, --accum-steps to a step."""
        return len(self.train_loader) // self.cfg.accum_steps

    @property
    def checkpoint_dir(self) -> Path:
        """Where last.pt and best.pt go."""
        return self.out / "checkpoints"

    def save_checkpoint(self, name: str) -> Path:
        """Write checkpoints/<name>.pt on rank 0; every rank must call (each holds its own part).
        A new last.pt of a later step moves the one it replaces to previous.pt (an epoch-end save on
        the step of a periodic one replaces it: previous.pt stays the older state)."""
        path = self.checkpoint_dir / f"{name}.pt"
        progress, trainer = self.progress, self.trainer
        mid_epoch = progress.epoch_step > 0 and trainer.meter is not None
        # Each rank has its own shard position, augmentation and dropout RNG, and partial sums.
        mine = {"loader": self.train_loader.state(), "rng": rng_state(trainer.device),
                "epoch_sums": trainer.meter.state() if mid_epoch else None,
                OPTIONAL_MIX_RNG: trainer.mixer.state() if trainer.mixer is not None else None}
        ranks = gather_to_main(mine, self.ctx)
        if not self.ctx.is_main:
            return path
        payload = {
            "format_version": FORMAT_VERSION, "model": clean_state_dict(trainer.model),
            "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(), "epoch": progress.epoch, "step": progress.step,
            "epoch_step": progress.epoch_step, "best_top1": float(progress.best_top1), "ranks": ranks,
            # Every rank's EMA has the same weights; rank 0's is saved. Its buffers are rank 0's
            # model's; each rank's EMA takes its own model's again whenever it is used.
            OPTIONAL_EMA: trainer.ema.state_dict() if trainer.ema is not None else None,
            OPTIONAL_TUNING: self.tuning.record() if self.tuning is not None else None,
            "config": self.cfg.to_dict(), "classes": list(self.classes), "train_files": self.train_files,
            "run_id": self.run_id, OPTIONAL_DATA: self.data_identity,
        }
        rotate = path.name == LAST and self.saved_step != progress.step
        save_atomic(payload, path, previous=self.checkpoint_dir / PREVIOUS if rotate else None)
        if path.name == LAST:
            self.saved_step = progress.step
        return path

    def restore(self, payload: dict[str, Any]) -> None:
        """Load weights (and their EMA), optimizer, schedule, scaler, this rank's RNGs (mixing's too)
        and the partial epoch's sums."""
        trainer = self.trainer
        bare_model(trainer.model).load_state_dict(payload["model"])
        trainer.optimizer.load_state_dict(payload["optimizer"])
        trainer.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"]:
            trainer.scaler.load_state_dict(payload["scaler"])
        if trainer.ema is not None:
            trainer.ema.load_state_dict(payload[OPTIONAL_EMA])
        mine = payload["ranks"][self.ctx.rank]
        restore_rng(mine["rng"], trainer.device)
        if trainer.mixer is not None:
            trainer.mixer.restore(mine[OPTIONAL_MIX_RNG])
        trainer.carried = mine["epoch_sums"]
        self.progress = Progress(epoch=payload["epoch"], step=payload["step"],
                                 epoch_step=payload["epoch_step"], best_top1=payload["best_top1"])
