"""Split data roots: a folder holding ``train/``, ``val/`` (and ``test/``) data sets, as
``make-sample`` and ``to-shards`` write them. ``split_folders`` is the one rule that tells one."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dali_pipelines.errors import DatasetError

SPLITS = ("train", "val", "test")  # sub-folder names of a split data root, in the order they are listed


def split_folders(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The split folders of ``root`` by name, in ``SPLITS`` order, when every sub-folder of it is
    one (hidden ones aside); {} when ``root`` is a single data set.

    Strict on purpose: an ImageFolder with a class called ``test`` stays one data set, and a
    data root holding other folders beside its splits is never read as a split root by halves.
    """
    return {name: Path(root) / name for name in splits_among(_visible_subfolders(Path(root)))}


def splits_among(subfolders: Iterable[str]) -> list[str]:
    """The split names, in ``SPLITS`` order, when every one of ``subfolders`` (the visible folders of
    a data root, local or in a bucket) is a split; [] otherwise."""
    names = set(subfolders)
    return [name for name in SPLITS if name in names] if names and names <= set(SPLITS) else []


def split_folder(root: str | os.PathLike[str], split: str) -> Path:
    """``root/split`` of a split data root; a DatasetError names what stops ``root`` being one."""
    root = Path(root)
    found = split_folders(root)
    if split in found:
        return found[split]
    if not (root / split).is_dir():
        raise DatasetError(f"{root / split} does not exist; pass a data root with a {split}/ folder inside "
                           "(as make-sample and to-shards write them)")
    others = sorted(_visible_subfolders(root) - set(SPLITS))
    raise DatasetError(f"data root {root} holds {', '.join(others)} beside its split folders; a split data "
                       "root holds no folders but train/, val/ and test/: move the others out")


def _visible_subfolders(root: Path) -> set[str]:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass an ImageFolder tree (root/<class>/<image>) "
                           "or a data root holding train/ and val/")
    with os.scandir(root) as entries:
        return {entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")}
