"""--tune: the run's loader settings, measured on rank 0 feeding this run's model (or a saved
tuning's for the same machine, data and --model), shared with every rank, recorded with the run,
and taken from the checkpoint on resume, never measured again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dali_pipelines import DataSource, PipelineConfig
from dali_pipelines.tune import (
    MeasureSpec,
    SearchSpace,
    TuneResult,
    TuneStore,
    format_summary,
    pipeline_space,
    saved_tuning,
    tune,
)
from dali_pipelines.tune.tuner import DEFAULT_SECONDS
from train.checkpoint import OPTIONAL_TUNING
from train.config import TrainConfig
from train.distributed import DistContext, broadcast_from_main, main_process_first


@dataclass(frozen=True)
class LoaderTuning:
    """The tuning a run's loaders are built with, and where it came from."""

    result: TuneResult
    origin: str  # "tuned" (measured now), "saved" (the store's), "checkpoint" (a resume's)

    def apply(self, cfg: PipelineConfig) -> PipelineConfig:
        """``cfg`` with the tuned settings."""
        return self.result.apply(cfg)

    def record(self) -> dict[str, Any]:
        """What the checkpoints keep (JSON-ready): the whole tuning, every scoring included."""
        return self.result.to_record()

    def summary(self) -> dict[str, Any]:
        """What config.json says about it."""
        result = self.result
        return {"origin": self.origin, "settings": result.settings, "defaults": result.defaults,
                "images_per_s": result.images_per_s, "metric": result.metric, "method": result.method,
                "seconds": result.seconds, "budget_s": result.budget_s, "scorings": len(result.trials),
                "created": result.created, "saved": None if result.path is None else str(result.path)}


def measure_spec(seconds: float) -> MeasureSpec:
    """How long each point is measured: the tuner's default (warm-up and 3 repeats of 1 s and 2
    batches each) at the default budget, proportionally shorter below it, down to one batch each,
    so that a short --tune-seconds still has room for more than the defaults."""
    scale = min(1.0, seconds / DEFAULT_SECONDS)
    full = MeasureSpec()
    return MeasureSpec(warmup_s=full.warmup_s * scale, repeat_s=full.repeat_s * scale, repeats=full.repeats,
                       warmup_batches=max(1, round(full.warmup_batches * scale)),
                       repeat_batches=max(1, round(full.repeat_batches * scale)))


def tuning_space(cfg: TrainConfig, base: PipelineConfig, cores: int) -> SearchSpace:
    """The settings searched for this rank's loader: threads up to ``cores`` (the rank's share of
    the node's, as its loader gets), float16 batches only under autocast."""
    return pipeline_space(base, half_ok=cfg.amp != "off", cores=cores)


def loader_tuning(cfg: TrainConfig, ctx: DistContext, data: DataSource, payload: dict[str, Any] | None, *,
                  base: PipelineConfig, cores: int) -> LoaderTuning | None:
    """The tuning of this run's loaders; None without --tune.

    A resume takes the checkpoint's. A new run: rank 0 reuses the saved tuning for this machine,
    data, model and workload, or tunes ``base`` (rank 0's loader) feeding the model on its device
    within --tune-seconds, while the other ranks wait in the set-up group; then every rank gets
    rank 0's. Rank 0 prints the budget before the search and the choice after it.
    """
    if not cfg.tune:
        return None
    if payload is not None:
        tuning = LoaderTuning(TuneResult.from_record(payload[OPTIONAL_TUNING]), "checkpoint")
        if ctx.is_main:
            print(f"loader settings recorded in the checkpoint (tuned {tuning.result.created}; a resume "
                  f"does not tune again): {_settings(tuning.result.settings)}", flush=True)
        return tuning
    found: tuple[dict[str, Any], str, Path | None] | None = None
    with main_process_first(ctx):
        if ctx.is_main:
            tuning = _tune_on_main(cfg, data, base, cores)
            found = (tuning.record(), tuning.origin, tuning.result.path)
    record, origin, path = broadcast_from_main(found, ctx)
    return LoaderTuning(TuneResult.from_record(record, path=path, reused=origin == "saved"), origin)


def _tune_on_main(cfg: TrainConfig, data: DataSource, base: PipelineConfig, cores: int) -> LoaderTuning:
    store = TuneStore()
    space = tuning_space(cfg, base, cores)
    saved = saved_tuning(data, base, model=cfg.model, store=store, amp=cfg.amp, space=space)
    if saved is not None:
        print(f"loader settings from the saved tuning {saved.path} (tuned {saved.created} for this machine, "
              f"data, model and thread cap; not tuned again): {_settings(saved.settings)}", flush=True)
        return LoaderTuning(saved, "saved")
    print(f"tuning the loader: at most {cfg.tune_seconds:g} s (--tune-seconds), hill climbing from the "
          f"defaults over {space.size} points ({', '.join(space.names)}; threads up to {cores}), scored by "
          f"{cfg.model} training steps on {cfg.device}", flush=True)
    result = tune(data, base, model=cfg.model, seconds=cfg.tune_seconds, amp=cfg.amp, space=space,
                  spec=measure_spec(cfg.tune_seconds), store=store)
    print(format_summary(result), flush=True)
    print(f"loader settings saved in {result.path}", flush=True)
    return LoaderTuning(result, "tuned")


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items())
