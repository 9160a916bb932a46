"""DALI data pipelines for image-classification training with PyTorch.

Public interface::

    from dali_pipelines import PipelineConfig, scan_image_folder, make_loader
    cfg = PipelineConfig(batch_size=64, device="cpu", num_threads=2)
    data = scan_image_folder("data/val")
    loader = make_loader(data, cfg, train=False, shard_id=0, num_shards=1)
    for images, labels in loader:
        ...

Layout: the core at the top (``config``, ``graphs`` with their ``readers`` and the train-time
``augment`` policies, ``loader``);
``sources/`` (ImageFolder trees, WebDataset shards, the converter, the sample maker);
``verify/`` (what would stop DALI, found before a graph is built); ``_util/`` (small helpers).
Everything ``train`` and ``bench`` use is exported here.
"""

from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import atomic_write, write_json_atomic
from dali_pipelines._util.native_stderr import NATIVE_LOG_ENV, collapse_native_logs, native_stderr
from dali_pipelines.augment import augment_images
from dali_pipelines.config import (
    AUGMENTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PipelineConfig,
    default_cache_dir,
    default_num_threads,
)
from dali_pipelines.errors import DatasetError
from dali_pipelines.graphs import (
    DALI_DTYPES,
    DALI_LAYOUTS,
    Graph,
    build_pipeline,
    center_crop_window,
    decoder_args,
    eval_graph,
    labels_out,
    resize_square,
    train_graph,
)
from dali_pipelines.loader import DaliLoader, make_loader
from dali_pipelines.readers import READER_NAME, read_encoded
from dali_pipelines.sources import (
    DataSource,
    ImageFolderData,
    WebDatasetShards,
    convert_dataset,
    convert_image_folder,
    make_sample_dataset,
    open_shards,
    open_source,
    read_file_list,
    scan_image_folder,
    write_file_list,
)
from dali_pipelines.verify import BadFilesError, VerifyReport, prepare_data, verify_data

__all__ = [
    "AUGMENTS",
    "DALI_DTYPES",
    "DALI_LAYOUTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NATIVE_LOG_ENV",
    "READER_NAME",
    "BadFilesError",
    "DaliLoader",
    "DataSource",
    "DatasetError",
    "Graph",
    "ImageFolderData",
    "PipelineConfig",
    "VerifyReport",
    "WebDatasetShards",
    "argtypes",
    "atomic_write",
    "augment_images",
    "build_pipeline",
    "center_crop_window",
    "collapse_native_logs",
    "convert_dataset",
    "convert_image_folder",
    "decoder_args",
    "default_cache_dir",
    "default_num_threads",
    "eval_graph",
    "labels_out",
    "make_loader",
    "make_sample_dataset",
    "native_stderr",
    "open_shards",
    "open_source",
    "prepare_data",
    "read_encoded",
    "read_file_list",
    "resize_square",
    "scan_image_folder",
    "train_graph",
    "verify_data",
    "write_file_list",
    "write_json_atomic",
]
