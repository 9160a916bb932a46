"""A run's data verified once per job: under torchrun rank 0 verifies and the other ranks apply
its verdicts, never reading a file to verify it."""

from __future__ import annotations

from collections.abc import Callable

from dali_pipelines import DataSource, ImageFolderData, WebDatasetShards
from dali_pipelines.config import default_cache_dir
from dali_pipelines.reader_lists import reader_list
from dali_pipelines.verify import Verdict, judge_data, prepare_shards
from train.config import TrainConfig
from train.distributed import DistContext, broadcast_from_main, main_process_first


def verified(cfg: TrainConfig, ctx: DistContext, sources: list[DataSource], *,
             list_seeds: list[int | None], first: Callable[[], None] | None = None) -> list[DataSource]:
    """``sources`` checked before any graph is built (one undecodable JPEG would kill the DALI
    pipeline hours into an epoch), once per job: rank 0 runs ``first``, verifies and writes the
    reader lists (``list_seeds``: each source's order, as its loader reads it) while the others
    wait in the set-up group; then every rank applies rank 0's verdicts to its own scan (they go
    over that group: no shared file system needed) and reads no file. Loose files: bad ones fail
    or are left out (--on-bad-file). Shards (their images were verified when they were written):
    each against its recorded checksum, cached, on rank 0."""
    verdicts, clean = None, None
    with main_process_first(ctx):  # a failure on rank 0 is reported once, the others exit quietly
        if ctx.is_main:
            if first is not None:
                first()
            verdicts = [_verdict(cfg, source) for source in sources]
            clean = [_applied(source, verdict) for source, verdict in zip(sources, verdicts, strict=True)]
            for data, seed in zip(clean, list_seeds, strict=True):
                if isinstance(data, ImageFolderData):  # found by the ranks that share the cache folder
                    reader_list(data, seed)
    verdicts = broadcast_from_main(verdicts, ctx)
    if clean is not None:
        return clean
    return [_applied(source, verdict) for source, verdict in zip(sources, verdicts, strict=True)]


def _applied(source: DataSource, verdict: Verdict | None) -> DataSource:
    return verdict.apply(source) if verdict is not None and isinstance(source, ImageFolderData) else source


def _verdict(cfg: TrainConfig, data: DataSource) -> Verdict | None:
    """Rank 0's decision on ``data``: a verdict for loose files, None for shards (checked here: a
    bad shard raises)."""
    if isinstance(data, WebDatasetShards):
        prepare_shards(data, cache_dir=default_cache_dir())
        return None
    return judge_data(data, on_bad_file=cfg.on_bad_file, cache_dir=default_cache_dir(),
                      max_pixels=cfg.max_pixels)
