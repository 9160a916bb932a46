"""Where samples come from: ImageFolder trees, WebDataset tar shards, the converter, the sample maker.

``open_source(path)`` resolves a ``--data`` path to either kind; both are a ``DataSource``,
which every graph's reader stage (``dali_pipelines.readers``) accepts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import (
    ImageFolderData,
    read_file_list,
    scan_image_folder,
    write_file_list,
)
from dali_pipelines.sources.s3 import is_s3_url, open_bucket
from dali_pipelines.sources.sample import make_sample_dataset
from dali_pipelines.sources.splits import SPLITS, split_folder, split_folders
from dali_pipelines.sources.to_shards import convert_dataset, convert_image_folder
from dali_pipelines.sources.webdataset import MANIFEST_NAME, PROGRESS_NAME, WebDatasetShards, open_shards

__all__ = ["SPLITS", "DataSource", "DatasetError", "ImageFolderData", "WebDatasetShards", "convert_dataset",
           "convert_image_folder", "detect_format", "is_shard_dir", "make_sample_dataset", "open_shards",
           "open_source", "read_file_list", "scan_image_folder", "split_folder", "split_folders",
           "write_file_list"]

_logger = logging.getLogger(__name__)

# What every reader accepts: loose files with labels, or tar shards with their indexes.
DataSource = ImageFolderData | WebDatasetShards

Format = Literal["auto", "folder", "wds"]
FORMATS: tuple[str, ...] = ("auto", "folder", "wds")


def open_source(path: str | os.PathLike[str], fmt: Format = "auto", split: str | None = None) -> DataSource:
    """The data source at ``path`` (or ``path/split``): ImageFolder files or WebDataset shards, on
    disk or in a bucket (``s3://bucket/prefix``, see ``sources.s3``).

    ``fmt="auto"`` picks shards when the folder holds ``.tar`` files (or a shard manifest)
    and an ImageFolder tree otherwise. ``split`` ("train", "val") selects a folder of a
    split data root (``split_folders``), as ``make-sample`` and ``to-shards`` lay them out.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if is_s3_url(path):  # a bucket: listed through boto3, read by DALI itself
        return open_bucket(str(path), fmt, split)
    root = _data_root(Path(path).expanduser(), split)
    detected = detect_format(root) if fmt == "auto" else fmt
    _logger.info("data %s: %s", root, "WebDataset shards" if detected == "wds" else "ImageFolder")
    if detected == "wds":
        return open_shards(root)
    if is_shard_dir(root):
        raise DatasetError(f"{root} holds .tar shards, not class folders; use format 'wds' (or 'auto')")
    return scan_image_folder(root)


def _data_root(path: Path, split: str | None) -> Path:
    if not path.exists():
        raise DatasetError(f"data path {path} does not exist; pass an ImageFolder tree or a shard directory")
    if not path.is_dir():
        raise DatasetError(f"data path {path} is not a folder; pass an ImageFolder tree or a shard directory "
                           "(a folder of .tar files), not a single file")
    return path if split is None else split_folder(path, split)


def is_shard_dir(root: Path) -> bool:
    """True when ``root`` holds WebDataset shards (a manifest, a conversion, or ``.tar`` files)."""
    if (root / MANIFEST_NAME).is_file() or (root / PROGRESS_NAME).is_file():
        return True
    with os.scandir(root) as entries:  # closed even when any() stops early
        return any(entry.is_file() and entry.name.endswith(".tar") for entry in entries)


def detect_format(root: Path) -> Literal["folder", "wds"]:
    """"wds" for a shard directory, "folder" for anything else (an ImageFolder tree, checked later)."""
    return "wds" if is_shard_dir(root) else "folder"
