"""The reader stage of every graph: encoded bytes and labels from loose files or tar shards."""

from __future__ import annotations

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.pipeline import DataNode, do_not_convert

from dali_pipelines.config import PipelineConfig
from dali_pipelines.reader_lists import reader_list
from dali_pipelines.sources import DataSource, WebDatasetShards
from dali_pipelines.sources.webdataset import IMAGE_EXTS, LABEL_EXT, LABEL_TRAILING

# The iterator finds the reader by this name to learn epoch and shard sizes.
READER_NAME = "Reader"

# Labels up to 999,999,999 fit the ASCII parse below (and int32).
_LABEL_DIGITS = 9
_WHITESPACE = b" \t\n\v\f\r"  # what bytes.strip() removes


# A graph with enable_conditionals rewrites every function it calls with AutoGraph; this plain
# Python (file lists, shard checks; zip(strict=True) is beyond AutoGraph) runs as written.
@do_not_convert
def read_encoded(source: DataSource, cfg: PipelineConfig, *, train: bool) -> tuple[DataNode, DataNode]:
    """Encoded images and int32 labels (shape [1]) for this shard, from loose files or tar shards.

    Train: a full global permutation per epoch, shared by all shards (like DistributedSampler),
    so shards stay disjoint. Eval: file order, each shard fixed (``stick_to_shard``), and
    ``pad_last_batch`` so the iterator can cut the padding off exactly. Loose files reach DALI as
    a ``file_list`` (``reader_lists``).
    """
    if isinstance(source, WebDatasetShards):
        return _read_shards(source, cfg, train=train)
    order = {"shuffle_after_epoch": True, "shuffle_after_epoch_seed": cfg.seed} if train else {
        "stick_to_shard": True}
    file_list, file_root = reader_list(source, seed=cfg.seed if train else None)
    return fn.readers.file(
        file_list=file_list,
        file_root=file_root,
        name=READER_NAME,
        shard_id=cfg.shard_id,
        num_shards=cfg.num_shards,
        pad_last_batch=True,
        **order,
    )


def _read_shards(source: WebDatasetShards, cfg: PipelineConfig, *, train: bool) -> tuple[DataNode, DataNode]:
    """The webdataset counterpart of the file reader: same sharding, padding and label dtype.

    DALI splits the *samples* (not the tar files) into ``num_shards`` contiguous ranges, as
    the file reader does, so any shard count works. Train: the tar order is reshuffled after
    every epoch with one seed on all ranks (ranges stay disjoint), and samples are shuffled
    within a ``random_shuffle`` buffer (initial_fill=1024 encoded images per rank); sequential
    reads inside each tar are kept, which is what makes shards fast. The stored order was
    shuffled once globally by the converter, so epoch 0 already mixes classes. Eval: stored
    order, ``stick_to_shard`` + ``pad_last_batch`` as for loose files.
    """
    # A shard cut short after opening would kill the pipeline with an error naming no file.
    source.check_unchanged()
    order = ({"shuffle_after_epoch": True, "shuffle_after_epoch_seed": cfg.seed, "random_shuffle": True}
             if train else {"stick_to_shard": True})
    jpegs, cls = fn.readers.webdataset(
        paths=list(source.shards),
        index_paths=list(source.index_files),
        ext=[";".join(IMAGE_EXTS), LABEL_EXT],
        case_sensitive_extensions=False,
        missing_component_behavior="error",
        name=READER_NAME,
        shard_id=cfg.shard_id,
        num_shards=cfg.num_shards,
        pad_last_batch=True,
        **order,
    )
    return jpegs, _parse_label(cls)


def _parse_label(text: DataNode) -> DataNode:
    """ASCII decimal bytes (WebDataset's .cls convention) -> int32 label of shape [1].

    Shards from other tools may pad the number with whitespace (b"3\\n", b" 7"): up to
    ``LABEL_TRAILING`` trailing whitespace bytes are cut off, leading ones read as '0'.
    The digits are left-padded with '0' to a fixed width (a slice starting before byte 0,
    padded), mapped to 0-9, and dotted with powers of ten: a few tiny CPU ops per sample.
    ``webdataset.open_shards`` has already checked every label of a foreign shard.
    """
    length = text.shape(dtype=types.INT32)
    last = fn.slice(text, length - LABEL_TRAILING, [LABEL_TRAILING], axes=[0],
                    out_of_bounds_policy="pad", fill_values=ord("0"))
    space = fn.lookup_table(last, keys=list(_WHITESPACE), values=[1] * len(_WHITESPACE),
                            default_value=0, dtype=types.INT32)
    trailing, run = 0, 1
    for i in reversed(range(LABEL_TRAILING)):  # length of the run of whitespace at the end
        run = run * space[i]
        trailing = trailing + run
    digits = fn.slice(text, length - trailing - _LABEL_DIGITS, [_LABEL_DIGITS], axes=[0],
                      out_of_bounds_policy="pad", fill_values=ord("0"))
    values = fn.lookup_table(digits, keys=list(b"0123456789"), values=list(range(10)),
                             default_value=0, dtype=types.INT32)  # leading whitespace -> 0
    powers = types.Constant(np.array([10 ** (_LABEL_DIGITS - 1 - i) for i in range(_LABEL_DIGITS)],
                                     dtype=np.int32))
    return fn.reductions.sum(values * powers, dtype=types.INT32, keep_dims=True)
