"""DALI data pipelines for image-classification training with PyTorch.

Public interface::

    from dali_pipelines import PipelineConfig, scan_image_folder, make_loader
    cfg = PipelineConfig(batch_size=64, device="cpu", num_threads=2)
    data = scan_image_folder("data/val")
    loader = make_loader(data, cfg, train=False, shard_id=0, num_shards=1)
    for images, labels in loader:
        ...
"""

from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD, PipelineConfig
from dali_pipelines.datasets import (
    DatasetError,
    ImageFolderData,
    scan_image_folder,
    write_file_list,
)
from dali_pipelines.loader import DaliLoader, make_loader
from dali_pipelines.sources import open_source
from dali_pipelines.to_shards import convert_image_folder
from dali_pipelines.webdataset import WebDatasetShards, open_shards

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DaliLoader",
    "DatasetError",
    "ImageFolderData",
    "PipelineConfig",
    "WebDatasetShards",
    "convert_image_folder",
    "make_loader",
    "open_shards",
    "open_source",
    "scan_image_folder",
    "write_file_list",
]
