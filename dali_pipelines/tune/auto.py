"""``PipelineConfig(num_threads="auto")``: the speed settings of a saved tuning of this loader, else
the defaults, resolved when a loader is made. Nothing is measured here: a loader call never runs
a search of its own (under torchrun every rank would search at once, competing for the cores)."""

from __future__ import annotations

import logging

from dali_pipelines.config import PipelineConfig
from dali_pipelines.sources import DataSource
from dali_pipelines.tune.store import TuneKey, TuneStore

_logger = logging.getLogger(__name__)

# What "auto" takes from a tuning: settings that change how fast batches come, never what they
# hold (the output dtype, also tuned on the GPU, stays the config's own).
AUTO_SETTINGS = ("num_threads", "prefetch_queue_depth", "hw_decoder_load")


def resolve_auto(source: DataSource, cfg: PipelineConfig, *, train: bool,
                 store: TuneStore | None = None) -> PipelineConfig:
    """``cfg`` with "auto" replaced: by the threads, prefetch depth and hardware-decoder share of
    the tuning saved for this machine, ``source`` and workload with the loader alone as the score
    (``python -m dali_pipelines tune`` or ``load_or_tune(source, cfg)`` make one), else by the
    defaults, with a log line saying how to tune. A config without "auto" comes back as it is."""
    if not cfg.auto:
        return cfg
    defaults = cfg.replace(num_threads=None)  # the device's default thread count
    store = store or TuneStore()
    key = TuneKey.of(source, defaults, model=None, train=train)
    record = store.load(key)
    if record is None:
        _logger.info("num_threads='auto': no saved tuning of this loader in %s; using the defaults "
                     "(%d threads, prefetch depth %d). Tune it once with %s", store.folder,
                     defaults.num_threads, defaults.prefetch_queue_depth,
                     _how_to_tune(source, defaults, train))
        return defaults
    settings = {name: value for name, value in record["settings"].items() if name in AUTO_SETTINGS}
    _logger.info("num_threads='auto': %s from the saved tuning %s (%s)",
                 ", ".join(f"{name}={value}" for name, value in settings.items()), store.path(key),
                 record.get("created", "date unknown"))
    return defaults.replace(**settings)


def _how_to_tune(source: DataSource, cfg: PipelineConfig, train: bool) -> str:
    """The command that saves the tuning "auto" looks for, when the command's workload is this
    loader's (a train graph, the device's layout); else the Python call."""
    call = "dali_pipelines.tune.load_or_tune(source, cfg)" + ("" if train else " with train=False")
    if not train or cfg.layout != ("NHWC" if cfg.device == "gpu" else "NCHW"):
        return call
    augment = "" if cfg.augment == "basic" else f" --augment {cfg.augment}"
    return (f"`python -m dali_pipelines tune {source.root} --device {cfg.device} --batch-size "
            f"{cfg.batch_size} --image-size {cfg.crop_size}{augment}` or {call}")
