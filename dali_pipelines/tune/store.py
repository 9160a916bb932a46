"""Saved tunings: one JSON file per (machine, data, model, loader workload), so a second run on the
same machine and data reuses the settings instead of searching again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from nvidia.dali import __version__ as dali_version

from dali_pipelines._util.atomic import write_json_atomic
from dali_pipelines.config import PipelineConfig, default_cache_dir
from dali_pipelines.sources import DataSource, ImageFolderData
from dali_pipelines.tune.search import SearchSpace
from dali_pipelines.tune.space import pipeline_space, usable_cores

_logger = logging.getLogger(__name__)

STORE_VERSION = 1
_SIZE_SAMPLES = 32  # files whose sizes enter an ImageFolder's digest: a stat each, evenly spread


def cpu_model() -> str:
    """The CPU's model name ("model name" in /proc/cpuinfo on Linux, else what platform reports)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_identity(device: str, device_id: int = 0) -> dict[str, Any]:
    """What makes one machine tune differently from another: CPU model, usable cores, GPU name."""
    gpu = torch.cuda.get_device_name(device_id) if device == "gpu" and torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": usable_cores(), "gpu": gpu}


def data_identity(source: DataSource) -> dict[str, Any]:
    """Root, sample count and a digest cheap enough for a million files: ImageFolder paths and labels
    (already in memory) plus the sizes of a few files spread over the set; shard names, sizes and
    sample counts for WebDataset shards."""
    digest = hashlib.sha1()
    if isinstance(source, ImageFolderData):
        root = str(source.root)
        for path, label in zip(source.files, source.labels, strict=True):
            digest.update(f"{os.path.relpath(path, root)}\0{label}\n".encode())
        stride = max(1, len(source.files) // _SIZE_SAMPLES)
        for path in source.files[::stride][:_SIZE_SAMPLES]:
            digest.update(f"{os.path.getsize(path)}\n".encode())
    else:
        for shard, size, count in zip(source.shards, source.shard_bytes, source.shard_samples, strict=True):
            digest.update(f"{Path(shard).name}\0{size}\0{count}\n".encode())
    return {"root": str(source.root), "samples": len(source), "digest": digest.hexdigest()[:16]}


@dataclass(frozen=True)
class TuneKey:
    """What a tuning is valid for: the machine, the data, the consumer and the loader's workload."""

    machine: dict[str, Any]
    data: dict[str, Any]
    model: str | None  # None: the loader alone was scored
    amp: str | None  # the model's mixed precision on the GPU; None without a model or on the CPU
    device: str
    batch_size: int
    image_size: int  # crop_size: the side of the images the graph emits
    graph: str  # "train" or "eval"
    augment: str
    layout: str
    # The candidates searched, by setting: a tuning under a narrower space (a rank's share of the
    # cores under torchrun, a --threads list) is another tuning.
    space: dict[str, list[Any]]
    dali: str = dali_version

    @classmethod
    def of(cls, source: DataSource, base: PipelineConfig, *, model: str | None, amp: str | None = None,
           train: bool = True, space: SearchSpace | None = None) -> TuneKey:
        """The key of tuning ``base``'s loader over ``source`` for ``model`` (None: the loader alone)
        over ``space`` (default: ``pipeline_space(base)``, as ``tune`` searches it)."""
        base = base.replace(num_threads=None) if base.auto else base  # "auto" is tuned from the defaults
        space = space or pipeline_space(base, half_ok=model is None or amp != "off")
        amp = amp if model is not None and base.device == "gpu" else None
        return cls(machine=machine_identity(base.device, base.device_id), data=data_identity(source),
                   model=model, amp=amp, device=base.device, batch_size=base.batch_size,
                   image_size=base.crop_size, graph="train" if train else "eval", augment=base.augment,
                   layout=base.layout, space={d.name: list(d.values) for d in space.dimensions})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> TuneKey:
        return cls(**value)

    def digest(self) -> str:
        """A short stable name for the key (sha1 of its sorted JSON)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def default_store_dir() -> Path:
    """``tune/`` in the project's cache folder (``config.default_cache_dir()``)."""
    return default_cache_dir() / "tune"


class TuneStore:
    """Records of tunings, one JSON file per key in ``folder``, each replaced atomically."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_store_dir()

    def path(self, key: TuneKey) -> Path:
        data = Path(key.data["root"]).name or "data"
        return self.folder / f"tune-{data}-{key.model or 'loader'}-{key.device}-{key.digest()}.json"

    def load(self, key: TuneKey) -> dict[str, Any] | None:
        """The record saved for ``key``, or None (none saved, unreadable, another version or key)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            _logger.warning("ignoring saved tuning %s (%s); it will be tuned again", path, err)
            return None
        if not (isinstance(record, dict) and record.get("version") == STORE_VERSION
                and record.get("key") == key.to_dict()):
            _logger.warning("ignoring saved tuning %s (another format or key); it will be tuned again", path)
            return None
        return record

    def save(self, key: TuneKey, record: dict[str, Any]) -> Path:
        """Write ``record`` (with the store's version and ``key``) for ``key``; returns the file."""
        path = self.path(key)
        write_json_atomic(path, {"version": STORE_VERSION, **record, "key": key.to_dict()})
        return path
