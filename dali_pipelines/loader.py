"""The iterator users hold: (images, labels) torch tensors from a DALI graph, epoch by epoch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_pipelines._util.native_stderr import collapse_native_logs
from dali_pipelines.config import PipelineConfig
from dali_pipelines.errors import DecoderFailedError
from dali_pipelines.graphs import Graph, build_pipeline
from dali_pipelines.readers import READER_NAME
from dali_pipelines.sources import DataSource, WebDatasetShards
from dali_pipelines.sources.s3 import read_failure
from dali_pipelines.verify.shards import locate_failure

_logger = logging.getLogger(__name__)


def shard_bounds(num_samples: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """[begin, end) of a shard as DALI's readers split a data set (contiguous, floor-based)."""
    begin = num_samples * shard_id // num_shards
    end = num_samples * (shard_id + 1) // num_shards
    return begin, end


class DaliLoader:
    """Batches of ``(images, labels)`` on the pipeline's device; each ``for`` is one epoch.

    Train (``LastBatchPolicy.DROP``): every batch is full; each epoch has
    ``floor(N / num_shards) // batch_size`` steps on *every* rank, so DDP ranks never wait
    on one another; the few samples left over each epoch change with the per-epoch shuffle.
    Eval (``LastBatchPolicy.PARTIAL`` on a padded reader): every sample of this shard exactly
    once, the last batch possibly short, and no padding duplicates.

    Each ``for`` (each ``iter()``) starts a fresh epoch, as with a DataLoader. DALI cannot drop
    the rest of an epoch (its reader and prefetch queue run ahead), so an epoch broken off
    (``break``, ``next(iter(loader))``) is finished first: its remaining batches are computed and
    dropped, and the new epoch is the one an unbroken loop would have reached. A loader made
    from ``checkpoint=`` starts where the saved one stood: its first ``for`` is the rest of
    that epoch. Use it as a context manager (or call ``close()``) to release the pipeline.
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
        self.source = source
        self.classes: tuple[str, ...] = tuple(source.classes)  # label i is classes[i]
        self.num_samples = len(source)
        begin, end = shard_bounds(len(source), cfg.shard_id, cfg.num_shards)
        self.shard_size = end - begin
        self._pipeline = build_pipeline(source, cfg, train=train, checkpoint=checkpoint, graph=graph)
        # Building the iterator builds the pipeline and starts prefetching
        # (prefetch_queue_depth batches), so the first next() does not wait for a full batch.
        with _read_failures_said(source):
            self._iterator: DALIGenericIterator | None = DALIGenericIterator(
                [self._pipeline],
                ["images", "labels"],
                reader_name=READER_NAME,
                last_batch_policy=LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL,
                auto_reset=True,
            )
        self.device = torch.device("cuda", cfg.device_id) if cfg.device == "gpu" else torch.device("cpu")
        self._epochs_started = 0  # numbers each for-loop's iterator; only the newest may run
        self._mid_epoch = False  # DALI has handed out batches of an epoch it has not ended yet

    def __len__(self) -> int:
        """Batches per epoch for this shard."""
        if self.train:
            return len(self._open())
        return math.ceil(self.shard_size / self.cfg.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fresh epoch (see the class docstring); an older iterator of this loader stops working."""
        iterator = self._open()
        if self._mid_epoch:
            self._finish_epoch(iterator)
        self._epochs_started += 1
        return self._batches(iterator, self._epochs_started)

    def _batches(self, iterator: DALIGenericIterator, number: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yielded = 0
        while True:
            if number != self._epochs_started or self._iterator is None:
                raise RuntimeError("this iterator's epoch was given up for a later for-loop over the same "
                                   "DaliLoader (or the loader was closed); iterate over the loader again")
            outputs = self._next(iterator)
            if outputs is None:
                _logger.debug("epoch done: %d batches", yielded)
                return
            batch = outputs[0]
            images, labels = batch["images"], batch["labels"]
            if images.shape[0] == 0:
                # A shard smaller than the padded shard length ends on an all-padding batch.
                continue
            yielded += 1
            # DALI labels are int32 with shape [N, 1]; losses want int64 [N].
            yield images, labels.reshape(-1).long()

    def _next(self, iterator: DALIGenericIterator) -> list[dict[str, torch.Tensor]] | None:
        """DALI's next batch, or None at the end of its epoch (DALI then resets itself).

        ``next()`` rather than ``for``: DALI's ``__iter__`` calls ``reset()``, which mid-epoch only
        warns and carries on with the old epoch."""
        try:
            with _read_failures_said(self.source):
                outputs = next(iterator)
        except StopIteration:
            self._mid_epoch = False
            return None
        self._mid_epoch = True
        return outputs

    def _finish_epoch(self, iterator: DALIGenericIterator) -> None:
        """Compute and drop the rest of a broken-off epoch, so the next one starts at DALI's epoch start."""
        dropped = 0
        while self._next(iterator) is not None:
            dropped += 1
        _logger.info("finished an epoch broken off before its end (%d batches dropped) so that this for-loop "
                     "starts a fresh one", dropped)

    def _open(self) -> DALIGenericIterator:
        if self._iterator is None:
            raise RuntimeError("this DaliLoader is closed; make a new one with make_loader")
        return self._iterator

    def state(self) -> str:
        """Serialized DALI checkpoint: reader position, RNG states and iterator counters.

        Pass it as ``checkpoint=`` to a new loader with the same data and settings to
        continue with exactly the batches this one would have produced next.
        """
        return self._open().checkpoints()[0]

    def close(self) -> None:
        """Release the pipeline (its memory pools keep their high-water mark until then)."""
        self._iterator = None
        self._pipeline = None

    def __enter__(self) -> DaliLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decoder_failed(err: RuntimeError) -> bool:
    text = str(err)
    return "Critical error in pipeline" in text and "fn.decoders" in text


def _decoder_error(err: RuntimeError) -> DecoderFailedError:
    """DALI's "Critical error in pipeline" from a decoder names no file and leaves the pipeline dead:
    what it means and the fix, with DALI's words in one line."""
    said = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return DecoderFailedError(
        "DALI's decoder failed on a file it cannot decode and the pipeline is dead (DALI does not say which "
        "file): verify the data before making a loader, with prepare_data(data) or python -m dali_pipelines "
        f"verify ROOT (docs/data.md). DALI: {said[:400]}")


@contextmanager
def _read_failures_said(source: DataSource) -> Iterator[None]:
    """DALI's pipeline died: a failure its message does not pin down becomes one line naming what
    failed and the fix: a bucket's read (``BucketReadError``), a shard's sample DALI cannot decode,
    or a loose file it cannot decode (``DecoderFailedError``)."""
    try:
        yield
    except RuntimeError as err:
        failure: Exception | None = read_failure(err, source)
        if failure is None and isinstance(source, WebDatasetShards):
            failure = locate_failure(source, err)
        if failure is None and _decoder_failed(err):
            failure = _decoder_error(err)
        if failure is None:
            raise
        raise failure from err


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
