"""Set up a training run (run directory, data, model, optimizer, resume) and drive its epochs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch

from dali_pipelines import (
    DaliLoader,
    DataSource,
    PipelineConfig,
    make_loader,
    open_train_val,
)
from dali_pipelines.config import default_num_threads
from dali_pipelines.sources.identity import data_identity
from train.checkpoint import estimated_bytes
from train.config import ConfigError, TrainConfig, resize_for
from train.data import verified
from train.distributed import (
    DistContext,
    any_rank_during_setup,
    init_distributed,
    main_process_first,
    shutdown,
)
from train.guards import Guard, TrainingHaltedError, close_records, resumed_from
from train.metrics import MetricsLog
from train.optim import state_copies
from train.recipe import (
    build_criterion,
    build_ema,
    build_grad_scaler,
    build_mixer,
    build_model,
    build_optimizer,
    build_scheduler,
    model_layout,
    wrap_model,
)
from train.resolution import SizedTrainLoader
from train.resume import check_resumable, check_resumed_data, finished_message, resume_command
from train.run import Run
from train.rundir import RunDir
from train.signals import StoppedBeforeTrainingError, StopRequest
from train.trainer import EpochResult, Progress, Trainer
from train.tuning import LoaderTuning, loader_tuning
from train.weights import read_weights

# --- data ---------------------------------------------------------------------------------------


def pipeline_config(cfg: TrainConfig, ctx: DistContext) -> PipelineConfig:
    """DALI settings for this rank: its shard, its GPU, NHWC on the GPU for channels_last, the
    evaluation sizes (``sized`` gives the training graph its epoch's)."""
    # The device's default (GPU: few threads leave the training loop its cores), capped at this
    # rank's share of the node's cores.
    threads = cfg.workers or min(default_num_threads(cfg.device), core_share(ctx))
    return PipelineConfig(
        batch_size=cfg.batch_size, num_threads=threads, device=cfg.device, device_id=ctx.local_rank,
        crop_size=cfg.eval_crop, resize_size=cfg.resize_size, seed=cfg.seed, random_erase=cfg.random_erase,
        shard_id=ctx.rank, num_shards=ctx.world_size, augment=cfg.augment, augment_ops=cfg.augment_ops,
        augment_magnitude=cfg.augment_magnitude, augment_magnitude_bins=cfg.augment_magnitude_bins,
        # NHWC batches viewed as NCHW are channels_last tensors: no transpose before the convs.
        layout="NHWC" if cfg.device == "gpu" else "NCHW",
    )


def sized(pipe_cfg: PipelineConfig, crop: int) -> PipelineConfig:
    """``pipe_cfg`` emitting ``crop`` x ``crop`` images (the training graph ignores the resize side)."""
    return pipe_cfg.replace(crop_size=crop, resize_size=resize_for(crop))


def core_share(ctx: DistContext) -> int:
    """This rank's share of the node's cores: the most DALI threads its loader gets (--tune too)."""
    return max(1, (os.cpu_count() or 1) // max(1, _ranks_on_node(ctx)))


def _ranks_on_node(ctx: DistContext) -> int:
    """Processes sharing this node's cores (torchrun sets LOCAL_WORLD_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ctx.enabled else 1


def run_data(cfg: TrainConfig) -> tuple[DataSource, DataSource]:
    """Training and validation sources from --data, --val-data and --val-split, with one class
    list; every path and class is checked here, before any file is read."""
    assert cfg.data is not None  # TrainConfig requires it; a resume brings the checkpoint's
    data = open_train_val(cfg.data, val_data=cfg.val_data, val_split=cfg.val_split, seed=cfg.seed,
                          fmt=cfg.format, list_root=cfg.list_root)
    assert data.val is not None  # open_train_val refuses a run without validation data
    return data.train, data.val


# --- set-up -------------------------------------------------------------------------------------


def setup(cfg: TrainConfig, ctx: DistContext, stop: StopRequest, payload: dict[str, Any] | None,
          run_dir: RunDir | None, *, device: torch.device) -> Run:
    """Data (verified), loaders, model and optimizer, restored from the checkpoint when resuming.

    ``run_dir`` is rank 0's claimed --out (None on the other ranks); ``device`` this rank's.
    """
    resume_path = Path(cfg.resume) if cfg.resume else None
    train_data, val_data = run_data(cfg)
    if payload is not None:
        check_resumed_data(payload, cfg, resume_path, classes=tuple(train_data.classes))
    # The model before the data's verification: a --weights file that does not fit, or an input
    # size the model cannot take, is refused before any long work. A resume restores its weights.
    initial = read_weights(Path(cfg.weights)) if cfg.weights and payload is None else None
    model = build_model(len(train_data.classes), cfg, device, initial)
    room = None if run_dir is None else partial(
        run_dir.check_free_space, estimated_bytes(model, ema=cfg.ema_decay > 0,
                                                  optimizer_copies=state_copies(cfg.opt)))
    train_data, val_data = verified(cfg, ctx, [train_data, val_data], list_seeds=[cfg.seed, None], first=room)
    with main_process_first(ctx):  # a resume on other data is reported once, by rank 0
        # Rank 0 saves the checkpoints, so it alone needs the identity (a stat per file); the
        # other ranks scanned the files rank 0 verified (its verdict's digest), and read none.
        identity = data_identity(train_data) if ctx.is_main else None
        if payload is not None:
            check_resumed_data(payload, cfg, resume_path, train_files=len(train_data), identity=identity)
    # After verification (a bad file would stop every loader the search builds), before the loaders.
    # What is tuned: the train loader at the first epoch's size, feeding --model.
    first = sized(pipeline_config(cfg, ctx), cfg.train_crop_at(0))
    tuning = loader_tuning(cfg, ctx, train_data, payload, base=first, cores=core_share(ctx))
    if any_rank_during_setup(stop.requested, ctx):  # Ctrl-C during verification or tuning: leave before
        # anything is deleted or written (every rank leaves, whichever got the signal)
        raise StoppedBeforeTrainingError(f"stopped by {stop.signal_name or 'a signal on another rank'} "
                                         "before the first step; nothing was changed or saved")
    if run_dir is not None and cfg.overwrite:
        run_dir.clear_previous_run()  # after every check: a run that failed one deletes nothing
    # The records first: TensorBoard's import captures fd 2 for a moment, which must not catch
    # the loaders' native log lines.
    metrics = MetricsLog(Path(cfg.out), enabled=ctx.is_main,
                         resumed_at=(payload["epoch"], payload["step"]) if payload else None)
    sized_train, val_loader = _loaders(cfg, ctx, train_data, val_data, payload, tuning=tuning)
    try:
        state = _assemble(cfg, ctx, device=device, stop=stop, payload=payload, metrics=metrics,
                          loaders=(sized_train, val_loader), train_data=train_data, model=model,
                          tuning=tuning)
        state.data_identity = None if identity is None else identity.record()
        return state
    except BaseException:
        sized_train.close()
        val_loader.close()
        metrics.close()
        raise


def _loaders(cfg: TrainConfig, ctx: DistContext, train_data: DataSource, val_data: DataSource,
             payload: dict[str, Any] | None, *,
             tuning: LoaderTuning | None) -> tuple[SizedTrainLoader, DaliLoader]:
    """This rank's train loader at its epoch's size (and the checkpoint's position when resuming),
    and its val loader, with the tuned settings when --tune is on."""
    pipe_cfg = pipeline_config(cfg, ctx)
    if tuning is not None:
        pipe_cfg = tuning.apply(pipe_cfg)

    def train_loader(size: int, position: str | None) -> DaliLoader:
        return make_loader(train_data, sized(pipe_cfg, size), train=True, checkpoint=position)

    sized_train = SizedTrainLoader(train_loader, cfg.train_crop_at, epoch=payload["epoch"] if payload else 0,
                                   checkpoint=payload["ranks"][ctx.rank]["loader"] if payload else None)
    try:
        if len(sized_train.loader) < cfg.accum_steps:
            raise ConfigError(f"--accum-steps {cfg.accum_steps} needs that many batches per epoch; "
                              f"--data has {len(sized_train.loader)} of --batch-size {cfg.batch_size} "
                              "(per rank): lower one of them")
        return sized_train, make_loader(val_data, pipe_cfg, train=False)
    except BaseException:
        sized_train.close()
        raise


def _assemble(cfg: TrainConfig, ctx: DistContext, *, device: torch.device, stop: StopRequest,
              payload: dict[str, Any] | None, metrics: MetricsLog,
              loaders: tuple[SizedTrainLoader, DaliLoader], train_data: DataSource,
              model: torch.nn.Module, tuning: LoaderTuning | None) -> Run:
    """EMA, optimizer and trainer around the model and loaders; restored from ``payload`` if given."""
    sized_train, val_loader = loaders
    train_loader = sized_train.loader
    ema = build_ema(cfg, model)
    model = wrap_model(model, cfg, ctx)
    optimizer = build_optimizer(model, cfg, ctx.world_size)
    trainer = Trainer(cfg=cfg, ctx=ctx, device=device, model=model, optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, cfg, len(train_loader) // cfg.accum_steps),
                      scaler=build_grad_scaler(cfg, device), criterion=build_criterion(cfg),
                      metrics=metrics, stop=stop, to_model_layout=model_layout(cfg.device),
                      mixer=build_mixer(cfg, len(train_data.classes), ctx.rank), ema=ema)
    state = Run(cfg=cfg, ctx=ctx, trainer=trainer, train_loader=train_loader, val_loader=val_loader,
                classes=tuple(train_data.classes), train_files=len(train_data),
                run_id=payload["run_id"] if payload else uuid.uuid4().hex[:12], progress=Progress(),
                out=Path(cfg.out), sized_train=sized_train, tuning=tuning)
    if payload is not None:
        state.restore(payload)
    else:
        # Dropout differs per rank; a resumed run continues the saved generator instead.
        torch.manual_seed(cfg.seed + 1000 * (ctx.rank + 1))
    return state


# --- the run ------------------------------------------------------------------------------------


def run(cfg: TrainConfig, payload: dict[str, Any] | None = None) -> int:
    """Train as configured (continuing ``payload``'s run when given); returns the exit code,
    0 also after a graceful stop and for a run that is already finished."""
    ctx = init_distributed(cfg.device)
    try:
        if payload is not None:
            check_resumable(payload, cfg, Path(cfg.resume), ctx.world_size)
            done = finished_message(payload, cfg)
            if done:
                if ctx.is_main:
                    print(done, flush=True)
                return 0
        return _claim_and_train(cfg, payload, ctx)
    finally:
        shutdown(ctx)


def _claim_and_train(cfg: TrainConfig, payload: dict[str, Any] | None, ctx: DistContext) -> int:
    device = torch.device("cuda", ctx.local_rank) if cfg.device == "gpu" else torch.device("cpu")
    run_dir = None
    with main_process_first(ctx):  # one owner checks and locks --out, before any work
        if ctx.is_main:
            run_dir = RunDir.claim(Path(cfg.out), resume_run_id=payload["run_id"] if payload else None,
                                   overwrite=cfg.overwrite, data=Path(cfg.data) if cfg.data else None)
    stop = StopRequest(kept=_kept_during_setup if ctx.is_main else None).install()
    try:
        try:
            state = setup(cfg, ctx, stop, payload, run_dir, device=device)
        except BaseException:
            if run_dir is not None:
                run_dir.remove_created()  # nothing of a failed set-up may block the corrected rerun
            raise
        guard = Guard(state, resumed_from(cfg.resume, payload))
        if ctx.is_main:
            stop.kept = guard.kept
        try:
            with guard.writes():
                _announce(state)
                with training_stream(device):
                    return _epochs(state, guard)
        except TrainingHaltedError as err:
            return guard.halt(err)
        finally:
            close_records(state.trainer.metrics.close, state.out)
            state.sized_train.close()
            state.val_loader.close()
    finally:
        stop.uninstall()
        if run_dir is not None:
            run_dir.release()


def _kept_during_setup() -> str:
    return "set-up had not finished, so this run wrote no checkpoint"


@contextmanager
def training_stream(device: torch.device) -> Iterator[None]:
    """On the GPU, the loop's torch work on a stream of higher priority than DALI's kernels, which
    share its SMs: the model's kernels go first when both are ready (gain: docs/gpu.md#training-stream).
    DALI's iterator copies its output on the current stream, so no cross-stream sync is needed."""
    if device.type != "cuda":
        yield
        return
    stream = torch.cuda.Stream(device, priority=-1)  # lower is higher; clamped to the device's range
    stream.wait_stream(torch.cuda.current_stream(device))  # model set-up and restore come first
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream(device).wait_stream(stream)


def _announce(state: Run) -> None:
    cfg, ctx = state.cfg, state.ctx
    if not ctx.is_main:
        return
    cfg.save(state.out / "config.json", run_id=state.run_id, world_size=ctx.world_size,
             global_batch=cfg.global_batch(ctx.world_size), scaled_lr=cfg.scaled_lr(ctx.world_size),
             steps_per_epoch=state.steps_per_epoch, classes=list(state.classes),
             train_files=state.train_files, pipeline=state.train_loader.cfg.to_dict(),
             eval_pipeline=state.val_loader.cfg.to_dict(),
             tuning=None if state.tuning is None else state.tuning.summary())
    where = f"GPU {torch.cuda.get_device_name(ctx.local_rank)}" if cfg.device == "gpu" else "CPU"
    sizes = f"train {state.sized_train.size} px, eval {cfg.eval_crop} px"
    print(f"device: {cfg.device} ({where}); model: {cfg.model}; ranks: {ctx.world_size}; classes: "
          f"{len(state.classes)}; steps/epoch: {state.steps_per_epoch}; global batch: "
          f"{cfg.global_batch(ctx.world_size)}; opt: {cfg.opt}, lr: {cfg.scaled_lr(ctx.world_size):.4g}; "
          f"{sizes}; run: {state.out}", flush=True)
    if cfg.resume:
        p = state.progress
        print(f"resumed from {cfg.resume}: epoch {p.epoch}, step {p.step}", flush=True)


def _epochs(state: Run, guard: Guard) -> int:
    cfg, progress, trainer = state.cfg, state.progress, state.trainer

    def on_step(p: Progress) -> None:
        if p.step % cfg.log_every == 0:
            guard.check_loss()
        if p.step % cfg.save_every == 0:
            guard.save("last")

    while progress.epoch < cfg.epochs:
        state.train_loader = state.sized_train.for_epoch(progress.epoch)  # a new graph on a size change
        batches = guard.batches(state.train_loader, "training")
        result = trainer.train_epoch(batches, len(state.train_loader), progress, on_step)
        if result.stopped_by and result.stopped_by != "max-steps":
            path = guard.save("last")
            if state.ctx.is_main:
                print(f"stopped by {result.stopped_by} at step {progress.step}; resume with: "
                      f"{resume_command(path, state.ctx)}", flush=True)
            return 0
        _end_epoch(state, result, guard)
        if result.stopped_by:
            break
    if state.ctx.is_main:
        if progress.epoch >= cfg.epochs:
            print(f"run {state.out} finished: {cfg.epochs} epochs, {progress.step} steps; "
                  f"checkpoints in {state.checkpoint_dir}", flush=True)
        else:
            print(f"stopped at --max-steps {cfg.max_steps} (epoch {progress.epoch}); train on with: "
                  f"{resume_command(state.checkpoint_dir / 'last.pt', state.ctx)} --max-steps N", flush=True)
    return 0


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 2)


def _end_epoch(state: Run, result: EpochResult, guard: Guard) -> None:
    """Evaluate (the raw weights, and the EMA's when kept), log the epoch, and checkpoint: last,
    and best by top-1 (the EMA's top-1 when --ema-decay is on)."""
    progress, trainer = state.progress, state.trainer
    scores = trainer.evaluate(guard.batches(state.val_loader, "validation"))
    timing = result.timing
    row = {"epoch": progress.epoch, "step": progress.step, "train_size": state.sized_train.size,
           "train_loss": round(result.loss, 6),
           "train_aux_loss": None if result.aux_loss is None else round(result.aux_loss, 6),
           "train_top1": round(result.top1, 6), **{k: round(v, 6) for k, v in scores.items()},
           "images_per_s": round(timing.images_per_second * state.ctx.world_size, 1),
           "data_wait_pct": round(100 * timing.data_wait_fraction, 2),
           "gpu_idle_pct": _percent(timing.gpu_idle_fraction),
           "seconds": round(timing.seconds, 2)}
    trainer.metrics.epoch(row)
    if state.ctx.is_main:
        _print_epoch(progress, result, scores, row)
    # Complete when every step ran, also when --max-steps or a signal came on its last step.
    complete = progress.epoch_step >= state.steps_per_epoch
    improved = False
    if complete:
        progress.epoch += 1
        progress.epoch_step = 0
        # Only whole epochs compete for best.pt: a --max-steps stop's mid-epoch evaluation does
        # not, so an interrupted run picks the same best.pt as an uninterrupted one.
        top1 = best_by(scores)
        improved = top1 > progress.best_top1
        progress.best_top1 = max(progress.best_top1, top1)
    guard.save("last")
    if improved:
        guard.save("best")


def best_by(scores: dict[str, float]) -> float:
    """The top-1 that picks best.pt: the EMA's when one is evaluated (as timm picks its best
    checkpoint; the EMA is what such a run is meant to deliver), else the raw weights'."""
    return scores.get("ema_val_top1", scores["val_top1"])


def _print_epoch(progress: Progress, result: EpochResult, scores: dict[str, float],
                 row: dict[str, Any]) -> None:
    idle = "n/a" if row["gpu_idle_pct"] is None else f"{row['gpu_idle_pct']:.1f}%"
    ema = ""
    if "ema_val_top1" in scores:
        ema = (f" | EMA val loss {scores['ema_val_loss']:.4f} top1 {scores['ema_val_top1']:.3f} "
               f"top5 {scores['ema_val_top5']:.3f}")
    aux = "" if result.aux_loss is None else f" (+ aux {result.aux_loss:.4f})"
    print(f"epoch {progress.epoch} step {progress.step} ({row['train_size']} px): train loss "
          f"{result.loss:.4f}{aux} top1 {result.top1:.3f} | val loss {scores['val_loss']:.4f} "
          f"top1 {scores['val_top1']:.3f} "
          f"top5 {scores['val_top5']:.3f} ({scores['val_images']} images){ema} | "
          f"{row['images_per_s']:.0f} img/s, data wait {row['data_wait_pct']:.1f}%, GPU idle {idle}",
          flush=True)
