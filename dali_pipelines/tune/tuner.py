"""``tune``: pick a loader's threads, prefetch depth (and on the GPU hardware-decoder share and output
dtype) by measuring them against the consumer, within a stated time; ``load_or_tune`` reuses a saved
tuning for the same machine, data and model."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dali_pipelines.config import PipelineConfig
from dali_pipelines.sources import DataSource
from dali_pipelines.tune.measure import MeasureSpec
from dali_pipelines.tune.scorers import AMP_MODES, LoaderScorer, TrainingStep, check_model_name
from dali_pipelines.tune.search import SEARCHES, Point, Score, SearchOutcome, SearchSpace, Trial
from dali_pipelines.tune.space import pipeline_space
from dali_pipelines.tune.store import TuneKey, TuneStore

_logger = logging.getLogger(__name__)

DEFAULT_SECONDS = 60.0
DEFAULT_TOLERANCE = 0.02  # a point must score 2 % above the defaults (or the climb's point) to replace it

OnPoint = Callable[[Point, Score], None]


@dataclass(frozen=True)
class TuneResult:
    """A tuning: the settings chosen, the defaults, every point tried, and what it is valid for."""

    key: TuneKey
    settings: dict[str, Any]  # the chosen values of the searched fields
    defaults: dict[str, Any]  # the base config's values of the same fields
    best: dict[str, Any]  # the point of the highest median score (see SearchOutcome.best)
    images_per_s: dict[str, float]  # median score of "chosen", "defaults" and "best"
    metric: str  # what the scores count
    method: str  # "hill" or "grid"
    complete: bool  # hill: converged; grid: every point scored (False: the budget ran out first)
    confirmed: bool  # a winner other than the defaults was scored again against them
    seconds: float  # wall time of the whole tuning, model set-up included
    budget_s: float
    space_size: int  # points in the grid of the searched space
    trials: tuple[dict[str, Any], ...]  # per scoring: point, phase, images_per_s, low, high, seconds, detail
    tolerance: float
    created: str  # UTC, ISO 8601
    path: Path | None = None  # the stored record's file, when stored or loaded
    reused: bool = False  # loaded from the store instead of measured now

    def apply(self, cfg: PipelineConfig) -> PipelineConfig:
        """``cfg`` with the chosen settings."""
        return cfg.replace(**self.settings)

    @property
    def gain(self) -> float:
        """Chosen over defaults (1.0: the defaults were kept)."""
        return self.images_per_s["chosen"] / self.images_per_s["defaults"]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record: what the store keeps, ``--out`` writes and ranks can broadcast."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("key", "path", "reused")}
        return {"key": self.key.to_dict(), **fields, "trials": list(self.trials)}

    @classmethod
    def from_record(cls, record: dict[str, Any], *, path: Path | None = None,
                    reused: bool = False) -> TuneResult:
        """The result ``to_record`` (or the store) wrote."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"key", "path", "reused", "trials"}
        return cls(key=TuneKey.from_dict(record["key"]), trials=tuple(record["trials"]), path=path,
                   reused=reused, **{name: record[name] for name in fields})


def tune(source: DataSource, base: PipelineConfig, *, model: str | None = None,
         seconds: float = DEFAULT_SECONDS, method: str = "hill", amp: str = "bf16", train: bool = True,
         space: SearchSpace | None = None, spec: MeasureSpec | None = None,
         tolerance: float = DEFAULT_TOLERANCE, confirm: int = 2, store: TuneStore | None = None,
         on_point: OnPoint | None = None) -> TuneResult:
    """Search ``base``'s loader settings over ``source`` for at most ``seconds`` (set-up included).

    Each point is scored by images/s of a real DaliLoader built from ``base`` with the point's
    settings: feeding training steps of torchvision's ``model`` (a builder name, e.g.
    ``"googlenet"``, with its auxiliary heads) when given, else alone. ``method`` "hill" climbs
    from the defaults (``base``'s own values, always scored first, kept unless beaten by more
    than ``tolerance``); "grid" scores every point of ``space`` (default: ``pipeline_space(base)``)
    while the budget lasts. ``on_point`` sees each point as it is scored. The result is saved in
    ``store`` when one is given. A winner other than the defaults is scored again, ``confirm``
    times, against the defaults before it is chosen (``search``'s rules). ``source`` should be
    verified first (one bad JPEG stops DALI).
    """
    started = time.monotonic()
    check_request(base, model=model, seconds=seconds, method=method, amp=amp)
    base = base.replace(num_threads=None) if base.auto else base  # "auto" starts from the defaults
    # float16 batches suit the loader alone and a model under autocast (searched on the GPU only).
    space = space or pipeline_space(base, half_ok=model is None or amp != "off")
    key = TuneKey.of(source, base, model=model, amp=amp, train=train, space=space)
    _logger.info("tuning the %s loader of %s (%d samples) for at most %.0f s: %s over %d points (%s), "
                 "scored by %s", base.device, source.root, len(source), seconds, method, space.size,
                 ", ".join(space.names), f"{model} training steps" if model else "the loader alone")
    step = None
    if model is not None:
        device = torch.device("cuda", base.device_id) if base.device == "gpu" else torch.device("cpu")
        step = TrainingStep(model, len(source.classes), device, layout=base.layout, amp=amp)
    scorer = LoaderScorer(source, base, step=step, train=train, spec=spec)
    outcome = SEARCHES[method](space, _reporting(scorer, on_point),
                               budget_s=max(0.0, seconds - (time.monotonic() - started)), tolerance=tolerance,
                               confirm=confirm)
    result = _result(key, outcome, space, metric=scorer.metric, tolerance=tolerance, budget_s=seconds,
                     seconds=time.monotonic() - started)
    if store is not None:
        result = dataclasses.replace(result, path=store.save(key, result.to_record()))
    return result


def check_request(base: PipelineConfig, *, model: str | None, seconds: float, method: str = "hill",
                  amp: str = "bf16") -> None:
    """Raise, naming the argument and the fix, for a tuning that cannot run; before any work."""
    if method not in SEARCHES:
        raise ValueError(f"method must be one of {', '.join(SEARCHES)}; got {method!r}")
    if not seconds > 0:
        raise ValueError(f"seconds (the tuning's time budget) must be > 0, got {seconds}")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {amp!r}")
    if model is not None:
        check_model_name(model)
    if base.device == "gpu" and not torch.cuda.is_available():
        raise ValueError("device 'gpu' needs a CUDA GPU and none is visible; tune with device 'cpu'")


def load_or_tune(source: DataSource, base: PipelineConfig, *, model: str | None = None,
                 store: TuneStore | None = None, **tune_args: Any) -> TuneResult:
    """The saved tuning for this machine, data, model and workload if there is one (``reused``),
    else ``tune(...)`` now and save it. ``tune_args`` go to ``tune``."""
    store = store or TuneStore()
    saved = saved_tuning(source, base, model=model, store=store, amp=tune_args.get("amp", "bf16"),
                         train=tune_args.get("train", True), space=tune_args.get("space"))
    if saved is not None:
        _logger.info("reusing the saved tuning %s", saved.path)
        return saved
    return tune(source, base, model=model, store=store, **tune_args)


def saved_tuning(source: DataSource, base: PipelineConfig, *, model: str | None, store: TuneStore,
                 amp: str = "bf16", train: bool = True,
                 space: SearchSpace | None = None) -> TuneResult | None:
    """The tuning ``store`` holds for this machine, data, model, workload and space (``reused``), or None."""
    key = TuneKey.of(source, base, model=model, amp=amp, train=train, space=space)
    record = store.load(key)
    return None if record is None else TuneResult.from_record(record, path=store.path(key), reused=True)


def _reporting(scorer: LoaderScorer, on_point: OnPoint | None) -> Callable[[Point], Score]:
    def score(point: Point) -> Score:
        result = scorer(point)
        if on_point is not None:
            on_point(point, result)
        return result

    return score


def _trial_row(trial: Trial) -> dict[str, Any]:
    score = trial.score
    return {"point": trial.point, "phase": trial.phase, "images_per_s": round(score.value, 2),
            "low": round(score.low, 2), "high": round(score.high, 2), "seconds": round(trial.seconds, 2),
            "detail": dict(score.detail)}


def _result(key: TuneKey, outcome: SearchOutcome, space: SearchSpace, *, metric: str, tolerance: float,
            budget_s: float, seconds: float) -> TuneResult:
    points = {"chosen": outcome.chosen, "defaults": outcome.defaults, "best": outcome.best}
    return TuneResult(
        key=key, settings=dict(outcome.chosen), defaults=dict(outcome.defaults), best=dict(outcome.best),
        images_per_s={name: round(outcome.value(point), 2) for name, point in points.items()},
        metric=metric, method=outcome.method, complete=outcome.complete, confirmed=outcome.confirmed,
        seconds=round(seconds, 2), budget_s=budget_s, space_size=space.size,
        trials=tuple(_trial_row(t) for t in outcome.trials), tolerance=tolerance,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
