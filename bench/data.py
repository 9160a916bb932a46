"""Which images a benchmark reads: any JPEG ImageFolder or label list, or a sample set made on the spot,
verified once per run; and the same images as WebDataset shards for the ``shards`` section, and
as shards capped at several resolutions for the ``capped`` section."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.sweep import UNCAPPED, capped_source
from dali_pipelines import (
    DatasetError,
    ImageFolderData,
    WebDatasetShards,
    make_sample_dataset,
    open_train_val,
    prepare_data,
)
from dali_pipelines.config import default_cache_dir
from dali_pipelines.sources import convert_image_folder, open_shards

_logger = logging.getLogger(__name__)
JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGES_PER_SHARD = 1000  # when converting for the shards section


def make_temp_sample(images: int, parent: Path) -> Path:
    """A sample set of ``images`` real-photo JPEGs under ``parent`` (a temp dir); its train/ folder."""
    root = parent / "sample"
    _logger.info("no --data given: making a %d-image sample set in %s", images, root)
    make_sample_dataset(root, images=images, seed=0, workers=os.cpu_count() or 1)
    return root / "train"


def load_jpeg_folder(path: Path, *, on_bad_file: str = "error",
                     list_root: Path | None = None) -> ImageFolderData:
    """The JPEGs ``--data`` names, scanned and verified (cached): a split root's train/, a folder
    of class folders or a label list (``open_train_val``'s training set). Every file must be a
    JPEG, since the backends compare JPEG decoders. A bad file would kill the DALI backends
    mid-measurement, so it stops the run before any job (``error``) or is left out of every
    backend alike (``skip``). Called once per run: the jobs get the verified list, so a warning
    about skipped files appears once."""
    data = open_train_val(path, fmt="folder", list_root=list_root, with_val=False).train
    assert isinstance(data, ImageFolderData)  # format "folder": loose files
    others = [f for f in data.files if not f.lower().endswith(JPEG_SUFFIXES)]
    if others:
        raise DatasetError(
            f"--data {path}: {len(others)} of {len(data)} files are not JPEG (e.g. {others[0]}); "
            "the benchmark compares JPEG decoders, so pass JPEGs only")
    return prepare_data(data, on_bad_file=on_bad_file, cache_dir=default_cache_dir())


def shards_for(files: ImageFolderData, shards_dir: Path | None,
               workdir: Path | None = None) -> WebDatasetShards:
    """``shards_dir`` opened and checked, or ``files`` converted into ``workdir`` (default: a folder
    under the temp dir, reused by later runs); either way checked to hold exactly the same images."""
    if shards_dir is not None:  # checked like training data: a damaged shard would kill its jobs
        shards = prepare_data(open_shards(shards_dir), cache_dir=default_cache_dir())
    else:
        parent = workdir or _default_workdir()
        _check_room(files, parent)
        shards = _converted(files, parent)
    check_same_images(files, shards)
    return shards


def capped_shards_for(files: ImageFolderData, sides: tuple[int, ...],
                      workdir: Path | None = None) -> dict[str, WebDatasetShards]:
    """``files`` as shards stored as they are (the shards section's conversion, shared) and capped
    at each of ``sides`` (``to-shards --max-side``), in ``workdir`` (default: under the temp dir,
    reused by later runs), by the sweep's source names; each checked to hold the same images."""
    parent = workdir or _default_workdir()
    _check_room(files, parent, copies=1 + len(sides))  # capped copies are smaller: an upper bound
    converted = {UNCAPPED: _converted(files, parent)}
    converted |= {capped_source(side): _converted(files, parent, max_side=side) for side in sides}
    for shards in converted.values():
        check_same_images(files, shards)
    return converted


def _default_workdir() -> Path:
    return Path(tempfile.gettempdir()) / "dali-bench-shards"


def _converted(files: ImageFolderData, parent: Path, *, max_side: int | None = None) -> WebDatasetShards:
    """``files`` converted into ``parent`` (or the finished conversion found there), in a folder
    named by a hash of the resolved data root: two data sets both called ``sample/train`` never
    share (or resume) a conversion."""
    root = files.root.resolve()
    key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    cap = "" if max_side is None else f"-max{max_side}"
    out = parent / f"{root.name}-{key}-{IMAGES_PER_SHARD}{cap}"
    # The converter verifies again and would warn again about the files this run already
    # reported as skipped; check_same_images makes sure it left out the same ones.
    verify_log = logging.getLogger("dali_pipelines.verify")
    level = verify_log.level
    verify_log.setLevel(logging.ERROR)
    try:
        return convert_image_folder(root, out, images_per_shard=IMAGES_PER_SHARD, max_side=max_side,
                                    progress=sys.stderr.isatty())
    finally:
        verify_log.setLevel(level)


def _check_room(files: ImageFolderData, parent: Path, *, copies: int = 1) -> None:
    """Raise DatasetError before converting when ``copies`` conversions (each about the JPEGs'
    size) won't fit."""
    needed = copies * sum(os.path.getsize(f) for f in files.files) * 1.05  # tar headers and indexes
    existing = next(p for p in [parent, *parent.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DatasetError(
            f"the {'capped' if copies > 1 else 'shards'} section converts --data into {parent} and needs "
            f"about {needed / 2**30:.1f} GiB; {free / 2**30:.1f} GiB are free there: set TMPDIR to a larger "
            f"disk{'' if copies > 1 else ', pass --shards'}, or leave the section out of --sections")


def check_same_images(files: ImageFolderData, shards: WebDatasetShards) -> None:
    """Raise DatasetError unless ``shards`` hold exactly the (verified) loose files.

    The converter records each shard's source files (relative to the source root) in the
    shard's ``<stem>.json``; shards without those records are compared by count only, with
    a warning.
    """
    paths = [Path(tar).with_suffix(".json") for tar in shards.shards]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]
    if len(records) != len(paths) or not all(isinstance(r, dict) and "sources" in r for r in records):
        _logger.warning("%s: shards without a record of their source files; comparing image counts only",
                        shards.root)
        if len(shards) != len(files):
            raise DatasetError(f"--shards holds {len(shards)} images but --data {len(files)} readable ones; "
                               "pass shards converted from the same data")
        return
    in_shards = Counter(src for r in records for src in r["sources"])
    loose = Counter(os.path.relpath(f, files.root) for f in files.files)
    if in_shards != loose:
        missing, extra = loose - in_shards, in_shards - loose
        example = next(iter(missing or extra))
        raise DatasetError(
            f"--shards {shards.root} and --data {files.root} differ: {sum(missing.values())} loose files not "
            f"in the shards, {sum(extra.values())} shard images not among the loose files (e.g. {example}); "
            "pass shards converted from the same data, or drop --shards to convert it")
