"""DALI file lists: the lists the file reader is handed (the names a line can hold: ``file_list_names``).

The reader gets ``file_list=`` (a file DALI parses in C++) instead of ``files=`` / ``labels=``
Python lists, which DALI copies several times over while it builds the graph. A list is written
once per data set and order into the cache folder, named by a digest of the paths, labels and
order it holds, and found again by every rank and every later run with the same data and seed;
the most recently used ``KEEP`` lists stay.
"""

from __future__ import annotations

import array
import hashlib
import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from dali_pipelines._util.atomic import atomic_write
from dali_pipelines.config import default_cache_dir

if TYPE_CHECKING:
    from dali_pipelines.sources.image_folder import ImageFolderData

_logger = logging.getLogger(__name__)

KEEP = 8  # lists kept in the folder (a run uses two: train and eval)
FOLDER = "reader-lists"  # under the cache folder
_FORMAT = "dali-pipelines-reader-list/1"  # part of every digest: a new layout never reuses old lists
_CHUNK = 65536  # paths joined, hashed or written at a time: bounds the memory of a pass

def seeded_order(count: int, seed: int) -> list[int]:
    """Indices ``0..count-1`` in one seeded order, the same on every rank and every run."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def reader_list(data: ImageFolderData, seed: int | None, folder: Path | None = None) -> tuple[str, str]:
    """``(file_list, file_root)`` for ``fn.readers.file``: ``data`` in the order of ``seed``
    (``seeded_order``), or as it is with None; written into ``folder`` (default: the cache's
    ``reader-lists/``) unless an identical list is there already.

    A train list is written in the seeded order and DALI's ``shuffle_after_epoch`` permutes it
    again at the start of every epoch, epoch 0 included: the batches are a function of the data,
    the seed and the shard alone, the same on every rank and in every resumed run.
    """
    folder = folder if folder is not None else default_cache_dir() / FOLDER
    root = str(data.root).rstrip("/") or "/"
    digest = _digest(data, seed)
    path = folder / f"{Path(root).name or 'root'}-{digest}.txt"
    if path.is_file():
        os.utime(path)  # most recently used: kept by the pruning below
    else:
        order = seeded_order(len(data), seed) if seed is not None else None
        _write(path, data, root, order)
        _logger.info("wrote the reader list of %s (%d files) to %s", root, len(data), path)
        _prune(folder, keep=path)
    return str(path), root


def _digest(data: ImageFolderData, seed: int | None) -> str:
    """What a list holds: the format, root, order (seed), every path and label (joined in chunks)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{_FORMAT}\0{data.root}\0{seed}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
    for start in range(0, len(data), _CHUNK):
        h.update("\0".join(data.files[start:start + _CHUNK]).encode("utf-8", "surrogateescape"))
        h.update(array.array("q", data.labels[start:start + _CHUNK]).tobytes())
    return h.hexdigest()


def _write(path: Path, data: ImageFolderData, root: str, order: list[int] | None) -> None:
    """"<name> <label>" per line, names relative to ``root`` (DALI's ``file_root``) where they lie
    under it, else absolute (DALI reads an absolute name as it is)."""
    prefix = root if root.endswith("/") else root + "/"
    cut = len(prefix)
    files, labels = data.files, data.labels
    indices = order if order is not None else range(len(files))
    with atomic_write(path, encoding="utf-8", errors="surrogateescape") as handle:
        for start in range(0, len(indices), _CHUNK):
            handle.write("".join(
                f"{files[i][cut:] if files[i].startswith(prefix) else files[i]} {labels[i]}\n"
                for i in indices[start:start + _CHUNK]))


def _prune(folder: Path, keep: Path) -> None:
    """Delete all but the ``KEEP`` most recently used lists (never ``keep``)."""
    try:
        lists = sorted(folder.glob("*.txt"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:  # another process pruned a list between the glob and its stat
        return
    for old in lists[KEEP:]:
        if old != keep:
            old.unlink(missing_ok=True)
