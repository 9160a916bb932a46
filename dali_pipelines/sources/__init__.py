"""Where samples come from: ImageFolder trees, label lists, WebDataset tar shards, the converter,
the sample maker.

``open_source(path)`` resolves a ``--data`` path to one data set; ``open_train_val`` turns
``--data`` / ``--val-data`` / ``--val-split`` into training and validation sets with one class
list. Each set is a ``DataSource``, which every graph's reader stage (``dali_pipelines.readers``)
accepts.
"""

from __future__ import annotations

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import (
    ImageFolderData,
    NoClassFoldersError,
    read_file_list,
    scan_image_folder,
    write_file_list,
)
from dali_pipelines.sources.label_list import read_label_list
from dali_pipelines.sources.opening import (
    FORMATS,
    DataSource,
    Format,
    TrainVal,
    detect_format,
    is_shard_dir,
    labelled_sets,
    open_source,
    open_train_val,
)
from dali_pipelines.sources.sample import make_sample_dataset
from dali_pipelines.sources.splits import SPLITS, split_folder, split_folders
from dali_pipelines.sources.to_shards import convert_dataset, convert_image_folder, convert_source
from dali_pipelines.sources.trainval import split_source, with_classes_of
from dali_pipelines.sources.webdataset import WebDatasetShards, open_shards

__all__ = ["FORMATS", "SPLITS", "DataSource", "DatasetError", "Format", "ImageFolderData",
           "NoClassFoldersError", "TrainVal", "WebDatasetShards", "convert_dataset", "convert_image_folder",
           "convert_source", "detect_format", "is_shard_dir", "labelled_sets", "make_sample_dataset",
           "open_shards", "open_source", "open_train_val", "read_file_list", "read_label_list",
           "scan_image_folder", "split_folder", "split_folders", "split_source", "with_classes_of",
           "write_file_list"]
