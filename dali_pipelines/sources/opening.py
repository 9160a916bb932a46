"""From a path to data sources: one data set (``open_source``), training and validation sets with
one class list (``open_train_val``), or every labelled set a path names (``labelled_sets``)."""

from __future__ import annotations

import codecs
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import (
    IMG_EXTENSIONS,
    ImageFolderData,
    NoClassFoldersError,
    scan_image_folder,
)
from dali_pipelines.sources.label_list import read_label_list
from dali_pipelines.sources.s3 import is_s3_url, open_bucket
from dali_pipelines.sources.splits import SPLITS, split_folder, split_folders
from dali_pipelines.sources.trainval import split_source, with_classes_of
from dali_pipelines.sources.webdataset import MANIFEST_NAME, PROGRESS_NAME, WebDatasetShards, open_shards

_logger = logging.getLogger(__name__)

# What every reader accepts: loose files with labels, or tar shards with their indexes.
DataSource = ImageFolderData | WebDatasetShards

Format = Literal["auto", "folder", "wds"]
FORMATS: tuple[str, ...] = ("auto", "folder", "wds")

# The fix for a --data (train, bench) that is no data set, in the words of those commands.
DATA_KINDS = ("a folder of class folders, a split root holding train/ and val/, a label list (.csv, .tsv, "
              "or a DALI file list) or a folder of WebDataset shards (docs/data.md)")


def open_source(path: str | os.PathLike[str], fmt: Format = "auto", split: str | None = None,
                list_root: str | os.PathLike[str] | None = None) -> DataSource:
    """The one data set at ``path`` (or ``path/split``): ImageFolder files, a label list or shards.

    ``fmt="auto"`` picks shards when the folder holds ``.tar`` files (or a shard manifest) and an
    ImageFolder tree otherwise; a file is a label list (``label_list``), its relative paths
    starting at ``list_root`` (default: its folder). ``split`` ("train", "val") selects a folder
    of a split data root (``split_folders``); a split root without ``split`` is refused, since
    its splits would read as classes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if is_s3_url(path):  # a bucket: listed through boto3, read by DALI itself (sources.s3)
        return open_bucket(str(path), fmt, split)
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"data path {path} does not exist; pass {DATA_KINDS}")
    if path.is_file():
        if split is not None or fmt == "wds":
            raise DatasetError(f"{path} is a file: a label list, one data set; pass a folder for "
                               f"{'split ' + repr(split) if split else 'WebDataset shards'}")
        return read_label_list(path, root=list_root)
    if not path.is_dir():
        raise DatasetError(f"data path {path} is neither a folder nor a regular file (a FIFO, socket or "
                           f"device?); pass {DATA_KINDS}")
    if list_root is not None:
        raise DatasetError(f"a list root applies to label lists only; {path} is a folder: drop the list root")
    if split is None and split_folders(path):
        raise DatasetError(f"{path} is a split data root ({', '.join(split_folders(path))}); open one of its "
                           "splits (split='train'), or pass the folder of one data set")
    root = path if split is None else split_folder(path, split)
    detected = detect_format(root) if fmt == "auto" else fmt
    _logger.info("data %s: %s", root, "WebDataset shards" if detected == "wds" else "ImageFolder")
    if detected == "wds":
        return open_shards(root)
    if is_shard_dir(root):
        raise DatasetError(f"{root} holds .tar shards, not class folders; use format 'wds' (or 'auto')")
    return scan_image_folder(root)


def is_shard_dir(root: Path) -> bool:
    """True when ``root`` holds WebDataset shards (a manifest, a conversion, or ``.tar`` files)."""
    if (root / MANIFEST_NAME).is_file() or (root / PROGRESS_NAME).is_file():
        return True
    with os.scandir(root) as entries:  # closed even when any() stops early
        return any(entry.is_file() and entry.name.endswith(".tar") for entry in entries)


def detect_format(root: Path) -> Literal["folder", "wds"]:
    """"wds" for a shard directory, "folder" for anything else (an ImageFolder tree, checked later)."""
    return "wds" if is_shard_dir(root) else "folder"


@dataclass(frozen=True)
class TrainVal:
    """A run's data: the training set, and the validation set labelled by its class list."""

    train: DataSource
    val: DataSource | None  # None only when asked for the training set alone (with_val=False)

    @property
    def classes(self) -> tuple[str, ...]:
        """The one class list of both."""
        return tuple(self.train.classes)


def open_train_val(data: str | os.PathLike[str], *, val_data: str | os.PathLike[str] | None = None,
                   val_split: float | None = None, seed: int = 0, fmt: str = "auto",
                   list_root: str | os.PathLike[str] | None = None, with_val: bool = True) -> TrainVal:
    """Training and validation sources from ``--data``, ``--val-data`` and ``--val-split``.

    ``data`` is a split root (its ``train/``; its ``val/`` unless another validation source is
    given), or one data set of any kind. The validation set is ``val_data`` (any kind; ``fmt``
    applies to ``data`` alone), ``val_split`` of ``data`` held out per class (``split_source``,
    from ``seed``), or the split root's ``val/``; it always gets the training set's class list
    (``with_classes_of``). ``with_val=False`` asks for the training set alone (a benchmark): a
    split root's ``val/`` is then not read. Everything is listed and checked here, before any
    file is read.
    """
    if val_data is not None and val_split is not None:
        raise DatasetError("--val-data and --val-split both name the validation data; pass one of them")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    layout = cast(Format, fmt)
    if is_s3_url(data):
        return _bucket_train_val(str(data), val_data=val_data, val_split=val_split, seed=seed, fmt=layout,
                                 list_root=list_root, with_val=with_val)
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(f"--data {path} does not exist; pass {DATA_KINDS}")
    try:
        splits = split_folders(path) if path.is_dir() else {}
        if splits and "train" not in splits:
            raise DatasetError(f"--data {path} is a split root without train/ (it holds "
                               f"{', '.join(splits)}/); add train/ or pass the training set itself")
        if with_val and "val" not in splits and val_data is None and val_split is None:
            kind = "a split root without val/" if splits else "one data set"
            raise DatasetError(f"--data {path} is {kind}, with no validation data: pass --val-split 0.1 to "
                               "hold out 10 % of each class, --val-data PATH, or a split root holding train/ "
                               "and val/")
        if "val" in splits and (val_data is not None or val_split is not None):
            given = "--val-data" if val_data is not None else "--val-split"
            raise DatasetError(f"--data {path} holds val/ already; drop {given}, or pass --data "
                               f"{path / 'train'} to use train/ alone")
        train = open_source(path, layout, split="train" if splits else None, list_root=list_root)
        if val_split is not None:
            train, val = split_source(train, val_split, seed)
            return TrainVal(train, val)
        if val_data is not None:
            return TrainVal(train, _open_val(val_data, train, list_root))
        if "val" in splits and with_val:
            split_val = open_source(path, layout, split="val")
            return TrainVal(train, with_classes_of(train, split_val, name=f"{path}/val"))
    except NoClassFoldersError as err:
        raise err.with_hint(f"pass {DATA_KINDS}") from None
    return TrainVal(train, None)


def _bucket_train_val(url: str, *, val_data: str | os.PathLike[str] | None, val_split: float | None,
                      seed: int, fmt: Format, list_root: str | os.PathLike[str] | None,
                      with_val: bool) -> TrainVal:
    """``open_train_val`` for ``--data s3://...``: one data set with --val-split / --val-data, else a
    split root in the bucket (its train/ and val/)."""
    if val_split is not None:
        return TrainVal(*split_source(open_source(url, fmt), val_split, seed))
    if val_data is not None:
        train = open_source(url, fmt)
        return TrainVal(train, _open_val(val_data, train, list_root))
    train = open_source(url, fmt, split="train")
    if not with_val:
        return TrainVal(train, None)
    return TrainVal(train, with_classes_of(train, open_source(url, fmt, split="val"), name=f"{url}/val"))


def _open_val(given: str | os.PathLike[str], train: DataSource,
              list_root: str | os.PathLike[str] | None) -> DataSource:
    """``--val-data``: one data set of any kind, labelled by ``train``'s classes."""
    if is_s3_url(given):
        return with_classes_of(train, open_source(given), name=f"--val-data {given}")
    path = Path(given).expanduser()
    if path.is_dir() and split_folders(path):
        raise DatasetError(f"--val-data {path} is a split root ({', '.join(split_folders(path))}); pass the "
                           "folder of its validation set (e.g. its val/)")
    root = list_root if path.is_file() else None
    return with_classes_of(train, open_source(path, list_root=root), name=f"--val-data {path}")


def labelled_sets(path: str | os.PathLike[str], *, list_root: str | os.PathLike[str] | None = None,
                  val_split: float | None = None, seed: int = 0,
                  single_image: bool = False) -> dict[str, ImageFolderData]:
    """The labelled loose-file sets ``path`` names, by split ("" for one set), with one class list.

    An ImageFolder root or a label list (``list_root`` as in ``open_source``): one set, or
    ``train`` and ``val`` with ``val_split``; a split root: each split, labelled by train/'s
    classes when it has train/. ``single_image``: an image file is a set of its own (verify).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist; pass an ImageFolder root, a split root or a label list")
    if path.is_file() and single_image and _is_image(path):
        if list_root is not None:
            raise DatasetError(f"a list root applies to label lists only; {path} is an image: drop the "
                               "list root")
        path = path.absolute()
        return {"": ImageFolderData(root=path.parent, files=(str(path),), labels=(0,), classes=("",))}
    splits = split_folders(path) if path.is_dir() else {}
    if not splits:
        data = open_source(path, "folder", list_root=list_root)
        assert isinstance(data, ImageFolderData)  # format "folder" or a list: loose files
        if val_split is None:
            return {"": data}
        train, val = split_source(data, val_split, seed)
        return {"train": train, "val": val}
    if val_split is not None and "val" in splits:
        raise DatasetError(f"{path} holds val/ already; drop the validation fraction, or pass "
                           f"{path / 'train'}")
    sets = {name: scan_image_folder(folder) for name, folder in splits.items()}
    if val_split is not None:
        if "train" not in sets:
            raise DatasetError(f"{path} is a split root without train/ to hold validation images out of")
        sets["train"], sets["val"] = split_source(sets["train"], val_split, seed)
    if "train" in sets:
        train = sets["train"]
        sets = {name: data if name == "train" else _loose(with_classes_of(train, data, name=str(path / name)))
                for name, data in sets.items()}
    return {name: sets[name] for name in SPLITS if name in sets}


def _loose(data: DataSource) -> ImageFolderData:
    assert isinstance(data, ImageFolderData)  # with_classes_of keeps loose files loose
    return data


def _is_image(path: Path) -> bool:
    """An image extension, or content that is not UTF-8 text (an image under another name)."""
    if path.suffix.lower() in IMG_EXTENSIONS:
        return True
    with path.open("rb") as handle:
        head = handle.read(4096)
    try:  # incremental: a character cut at the end of the sample is no evidence
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False
