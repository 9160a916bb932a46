"""The iterator users hold: (images, labels) torch tensors from a DALI graph, epoch by epoch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_pipelines._util.native_stderr import collapse_native_logs
from dali_pipelines.config import PipelineConfig
from dali_pipelines.graphs import Graph, build_pipeline
from dali_pipelines.readers import READER_NAME
from dali_pipelines.sources import DataSource

_logger = logging.getLogger(__name__)


def shard_bounds(num_samples: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """[begin, end) of a shard as DALI's readers split a data set (contiguous, floor-based)."""
    begin = num_samples * shard_id // num_shards
    end = num_samples * (shard_id + 1) // num_shards
    return begin, end


class DaliLoader:
    """Batches of ``(images, labels)`` on the pipeline's device; one pass of ``for`` = one epoch.

    Train (``LastBatchPolicy.DROP``): every batch is full; each epoch has
    ``floor(N / num_shards) // batch_size`` steps on *every* rank, so DDP ranks never wait
    on one another; the few samples left over each epoch change with the per-epoch shuffle.
    Eval (``LastBatchPolicy.PARTIAL`` on a padded reader): every sample of this shard exactly
    once, the last batch possibly short, and no padding duplicates.
    """

    def __init__(self, source: DataSource, cfg: PipelineConfig, *, train: bool,
                 checkpoint: str | None = None, graph: Graph | None = None) -> None:
        if len(source) < cfg.num_shards:
            raise ValueError(
                f"{len(source)} samples cannot be split into num_shards={cfg.num_shards}; "
                "use fewer ranks or more data"
            )
        if train and len(source) // cfg.num_shards < cfg.batch_size:
            raise ValueError(
                f"batch_size={cfg.batch_size} is larger than a training shard "
                f"({len(source) // cfg.num_shards} samples), so an epoch would have no full "
                "batch; lower --batch-size"
            )
        self.cfg = cfg
        self.train = train
        self.num_samples = len(source)
        begin, end = shard_bounds(len(source), cfg.shard_id, cfg.num_shards)
        self.shard_size = end - begin
        self._pipeline = build_pipeline(source, cfg, train=train, checkpoint=checkpoint, graph=graph)
        # Building the iterator builds the pipeline and starts prefetching
        # (prefetch_queue_depth batches), so the first next() does not wait for a full batch.
        self._iterator = DALIGenericIterator(
            [self._pipeline],
            ["images", "labels"],
            reader_name=READER_NAME,
            last_batch_policy=LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL,
            auto_reset=True,
        )
        self.device = torch.device("cuda", cfg.device_id) if cfg.device == "gpu" else torch.device("cpu")

    def __len__(self) -> int:
        """Batches per epoch for this shard."""
        if self.train:
            return len(self._iterator)
        return math.ceil(self.shard_size / self.cfg.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yielded = 0
        for outputs in self._iterator:
            batch = outputs[0]
            images, labels = batch["images"], batch["labels"]
            if images.shape[0] == 0:
                # A shard smaller than the padded shard length ends on an all-padding batch.
                continue
            yielded += 1
            # DALI labels are int32 with shape [N, 1]; losses want int64 [N].
            yield images, labels.reshape(-1).long()
        _logger.debug("epoch done: %d batches", yielded)

    def state(self) -> str:
        """Serialized DALI checkpoint: reader position, RNG states and iterator counters.

        Pass it as ``checkpoint=`` to a new loader with the same data and settings to
        continue with exactly the batches this one would have produced next.
        """
        return self._iterator.checkpoints()[0]

    def close(self) -> None:
        """Release the pipeline (its memory pools keep their high-water mark until then)."""
        self._iterator = None
        self._pipeline = None


def make_loader(source: DataSource, cfg: PipelineConfig, *, train: bool,
                shard_id: int | None = None, num_shards: int | None = None,
                checkpoint: str | None = None, graph: Graph | None = None) -> DaliLoader:
    """The loader for ``source`` under ``cfg``; ``shard_id``/``num_shards`` override cfg's.

    ``num_threads="auto"`` takes a saved tuning's speed settings, else the defaults
    (``dali_pipelines.tune.resolve_auto``; nothing is measured here). ``graph`` replaces the train
    or eval graph (see ``graphs.build_pipeline``). The first call
    routes the process's fd 2 through ``collapse_native_logs``, so DALI's per-sample native log
    lines appear once each with a count at exit (``DALI_PIPELINES_NATIVE_LOG=raw`` turns it off).
    """
    if shard_id is not None or num_shards is not None:
        cfg = cfg.replace(
            shard_id=cfg.shard_id if shard_id is None else shard_id,
            num_shards=cfg.num_shards if num_shards is None else num_shards,
        )
    if cfg.device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("device='gpu' needs a CUDA GPU and none is visible; use device='cpu'")
    if cfg.auto:
        # Imported here: the tune package's scorers import this module.
        from dali_pipelines.tune.auto import resolve_auto

        cfg = resolve_auto(source, cfg, train=train)
    collapse_native_logs()
    return DaliLoader(source, cfg, train=train, checkpoint=checkpoint, graph=graph)
