"""DALI data pipelines for image-classification training with PyTorch.

Public interface::

    from dali_pipelines import PipelineConfig, make_loader, prepare_data, scan_image_folder
    cfg = PipelineConfig(batch_size=64, device="cpu", num_threads=2)
    data = prepare_data(scan_image_folder("data/val"))  # verified: one bad JPEG kills a DALI graph
    with make_loader(data, cfg, train=False) as loader:
        for images, labels in loader:  # each for-loop is one epoch
            ...

What is exported here is what a user of the library calls, in four groups:

- loading: ``PipelineConfig`` (every setting, validated), ``make_loader`` and the ``DaliLoader``
  it returns; ``build_pipeline`` for a custom ``@pipeline_def`` graph (its building blocks:
  ``dali_pipelines.readers``, ``dali_pipelines.graphs``, ``dali_pipelines.augment``);
- data: ``open_source`` (a ``--data`` path to a source), ``open_train_val`` (training and
  validation sources with one class list, a stratified hold-out with ``val_split``),
  ``scan_image_folder``, ``read_label_list`` (CSV / TSV / DALI file lists), the source types
  ``DataSource``, ``ImageFolderData``, ``WebDatasetShards``, and ``DatasetError``, which every
  data check raises;
- verification before DALI sees a file: ``verify_data`` (a ``VerifyReport``), ``prepare_data``
  (verify, then fail with ``BadFilesError`` or skip; shards: each against its recorded
  checksum, cached);
- data set tools: ``convert_dataset`` (ImageFolder to WebDataset shards), ``make_sample_dataset``.

Everything else (graph internals, constants, ``_util`` helpers) is imported from its own
module. Layout: the core at the top (``config``, ``graphs`` with their ``readers`` and the
train-time ``augment`` policies, ``loader``); ``sources/`` (ImageFolder trees, WebDataset
shards, the converter, the sample maker); ``verify/`` (what would stop DALI, found before a
graph is built); ``_util/`` (helpers the library, ``train`` and ``bench`` share).
"""

from dali_pipelines.config import PipelineConfig
from dali_pipelines.errors import DatasetError
from dali_pipelines.graphs import build_pipeline
from dali_pipelines.loader import DaliLoader, make_loader
from dali_pipelines.sources import (
    DataSource,
    ImageFolderData,
    WebDatasetShards,
    convert_dataset,
    make_sample_dataset,
    open_source,
    open_train_val,
    read_label_list,
    scan_image_folder,
)
from dali_pipelines.verify import BadFilesError, VerifyReport, prepare_data, verify_data

__all__ = [
    "BadFilesError",
    "DaliLoader",
    "DataSource",
    "DatasetError",
    "ImageFolderData",
    "PipelineConfig",
    "VerifyReport",
    "WebDatasetShards",
    "build_pipeline",
    "convert_dataset",
    "make_loader",
    "make_sample_dataset",
    "open_source",
    "open_train_val",
    "prepare_data",
    "read_label_list",
    "scan_image_folder",
    "verify_data",
]
