"""AUTOTUNE for DALI loaders: threads, prefetch depth and (GPU) hardware-decoder share and output dtype,
picked by measuring real loaders against the training step, within a stated time.

::

    from dali_pipelines.tune import TuneStore, load_or_tune, tune
    result = tune(source, PipelineConfig(device="cpu", batch_size=32), model="googlenet", seconds=60)
    cfg = result.apply(cfg)           # the chosen num_threads, prefetch_queue_depth, ...
    result = load_or_tune(source, cfg, model="googlenet")  # a saved tuning when there is one
    loader = make_loader(source, cfg.replace(num_threads="auto"), train=True)  # a saved tuning, or defaults

``search`` is the pure search (hill climbing, grid) on any scoring function; ``space`` the
settings searched; ``scorers`` and ``measure`` what a point is scored by; ``store`` the saved
tunings, keyed by machine, data, model and workload; ``auto`` resolves
``PipelineConfig(num_threads="auto")`` from them.
"""

from dali_pipelines.tune.auto import AUTO_SETTINGS, resolve_auto
from dali_pipelines.tune.measure import MeasureSpec
from dali_pipelines.tune.scorers import LoaderScorer, TrainingStep
from dali_pipelines.tune.search import Dimension, Score, SearchOutcome, SearchSpace, grid_search, hill_climb
from dali_pipelines.tune.space import pipeline_space
from dali_pipelines.tune.store import TuneKey, TuneStore
from dali_pipelines.tune.table import format_summary, format_table
from dali_pipelines.tune.tuner import TuneResult, load_or_tune, saved_tuning, tune

__all__ = ["AUTO_SETTINGS", "Dimension", "LoaderScorer", "MeasureSpec", "Score", "SearchOutcome",
           "SearchSpace", "TrainingStep", "TuneKey", "TuneResult", "TuneStore", "format_summary",
           "format_table", "grid_search", "hill_climb", "load_or_tune", "pipeline_space", "resolve_auto",
           "saved_tuning", "tune"]
