"""Training and validation data with one class list: a stratified hold-out from one data set,
and a validation set labelled by the training set's classes."""

from __future__ import annotations

import dataclasses
import logging
import math
import random

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.sources.webdataset import WebDatasetShards

_logger = logging.getLogger(__name__)

Source = ImageFolderData | WebDatasetShards


def held_out_count(class_size: int, fraction: float) -> int:
    """Validation images taken from a class of ``class_size``: ``fraction`` of it rounded half up,
    but never its last image, so that training keeps every class."""
    return max(0, min(class_size - 1, math.floor(fraction * class_size + 0.5)))


def split_source(source: Source, fraction: float, seed: int) -> tuple[ImageFolderData, ImageFolderData]:
    """(train, val) of ``source``: ``held_out_count`` images of each class go to val, both keep
    ``source``'s class list and its sample order.

    Which images is a function of ``seed``, the class name and the class's file paths alone: each
    class's paths are sorted, then shuffled by a generator seeded with ``"<seed>/<class>"``. The
    order of a label list, other classes and the data's location (a common prefix) change nothing,
    so a resumed run, another rank or ``to-shards`` gets the same split.
    """
    if isinstance(source, WebDatasetShards):
        raise DatasetError(f"{source.root} holds WebDataset shards, which cannot be split per image; hold "
                           "out the validation part when converting (to-shards --val-split), or pass the "
                           "loose files")
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    members: dict[int, list[int]] = {}
    for index, label in enumerate(source.labels):
        members.setdefault(label, []).append(index)
    held: set[int] = set()
    for label, indices in members.items():
        ordered = sorted(indices, key=lambda i: source.files[i])
        random.Random(f"{seed}/{source.classes[label]}").shuffle(ordered)
        held.update(ordered[:held_out_count(len(ordered), fraction)])
    if not held:
        largest = max(len(indices) for indices in members.values())
        raise DatasetError(f"a validation fraction of {fraction} holds out no image of {source.root}: its "
                           f"largest class has {largest} images; pass a larger fraction or validation data")
    train = source.subset([i for i in range(len(source)) if i not in held])
    val = source.subset([i for i in range(len(source)) if i in held])
    _logger.info("held out %d of %d images of %s (%g of each class) for validation", len(val),
                 len(source), source.root, fraction)
    return train, val


def with_classes_of(train: Source, val: Source, *, name: str) -> Source:
    """``val`` labelled by ``train``'s class list, classes matched by name.

    A validation class the training data lacks is refused (its label would be out of range, or
    another class's). A training class without validation images is allowed: the model is scored
    on the others, and a warning names them. Shards store their labels, so validation shards
    must number their classes as the training data does (``to-shards`` of one split root does).
    ``name`` says what ``val`` is in messages (``--val-data DIR``, ``ROOT/val``).
    """
    if tuple(val.classes) == tuple(train.classes):
        return val
    index = {cls: i for i, cls in enumerate(train.classes)}
    used = _used_classes(val)
    extra = [cls for cls in used if cls not in index]
    if extra:
        raise DatasetError(f"{name} has {len(extra)} class{'es' if len(extra) > 1 else ''} the training data "
                           f"({train.root}) lacks: {_few(extra)}; every validation class must be a training "
                           f"class: remove {'them' if len(extra) > 1 else 'it'} from {name} or add "
                           f"{'them' if len(extra) > 1 else 'it'} to the training data")
    missing = [cls for cls in train.classes if cls not in set(used)]
    if missing:
        _logger.warning("%s has no images of %d of the %d training classes (%s); the model is scored on the "
                        "others", name, len(missing), len(train.classes), _few(missing))
    if isinstance(val, WebDatasetShards):
        moved = [cls for i, cls in enumerate(val.classes) if index[cls] != i]
        if moved:
            raise DatasetError(f"{name} holds shards that number their classes otherwise than the training "
                               f"data ({_few(moved)} differ) and store those numbers: convert train and val "
                               "in one to-shards run (a split root, or --val-split), which gives both one "
                               "class list")
        return val
    labels = tuple(index[val.classes[label]] for label in val.labels)
    # replace() keeps what a subclass adds (a bucket tree's sizes and ETags)
    return dataclasses.replace(val, labels=labels, classes=tuple(train.classes))


def _used_classes(source: Source) -> list[str]:
    """The classes ``source`` has images of (a label list may name indices it never uses)."""
    if isinstance(source, WebDatasetShards):
        return list(source.classes)
    labels = set(source.labels)
    return [cls for i, cls in enumerate(source.classes) if i in labels]


def _few(names: list[str], shown: int = 6) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
