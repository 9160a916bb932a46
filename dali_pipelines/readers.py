"""The reader stage of every graph: encoded bytes and labels from loose files or tar shards."""

from __future__ import annotations

import random

from nvidia.dali import fn
from nvidia.dali.pipeline import DataNode

from dali_pipelines.config import PipelineConfig
from dali_pipelines.datasets import ImageFolderData

# The iterator finds the reader by this name to learn epoch and shard sizes.
READER_NAME = "Reader"

DataSource = ImageFolderData


def shuffled_once(data: ImageFolderData, seed: int) -> ImageFolderData:
    """The list in one seeded global order, identical on every rank.

    DALI's ``shuffle_after_epoch`` reshuffles only *after* each epoch, so epoch 0 would
    otherwise run in class order (every batch one class).
    """
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return data.subset(order)


def read_encoded(source: DataSource, cfg: PipelineConfig, *, train: bool) -> tuple[DataNode, DataNode]:
    """Encoded images and int32 labels for this shard.

    Train: a full global permutation per epoch, shared by all shards (like DistributedSampler),
    so shards stay disjoint. Eval: file order, each shard fixed (``stick_to_shard``), and
    ``pad_last_batch`` so the iterator can cut the padding off exactly.
    """
    order = {"shuffle_after_epoch": True, "shuffle_after_epoch_seed": cfg.seed} if train else {
        "stick_to_shard": True}
    data = shuffled_once(source, cfg.seed) if train else source
    return fn.readers.file(
        files=list(data.files),
        labels=list(data.labels),
        name=READER_NAME,
        shard_id=cfg.shard_id,
        num_shards=cfg.num_shards,
        pad_last_batch=True,
        **order,
    )
