"""The identity of a data source: which samples it holds, in which order, independent of where
it lies, so that a resumed run can tell the same data moved from other data of the same size.

``data_identity(source)`` is the one entry point; each source kind has its own entries:

- loose files (``ImageFolderData``): one ``[relative path, label, size in bytes]`` per file, in
  the reader's order (the order decides the sample permutation), the path relative to the
  source's root in POSIX form: moving the whole tree keeps the identity, deleting, adding,
  renaming, relabelling or rewriting a file (a new size) changes it. A bucket's tree
  (``S3ImageFolder``) gives the sizes its listing reported, so no object is read;
- WebDataset shards (``WebDatasetShards``, in a bucket too): one ``[tar name, samples,
  checksum]`` per shard in reading order, the checksum being the sha256 that ``to-shards``
  recorded in ``manifest.json``; shards without one use their size in bytes instead (hashing
  terabytes at every start is not affordable).

The digest is the sha256 of ``json.dumps(entries, separators=(",", ":"))`` (ASCII, so any file
name is representable), prefixed by the kind: ``files:<hex>`` or ``shards:<hex>``.
``DataIdentity.record()`` is what a checkpoint stores: the digest, the count and the entries
(zlib-compressed JSON), from which ``differences`` names what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.bucket import is_s3_url
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.sources.webdataset import WebDatasetShards

_NAMED = 3  # entries named per kind of change in a message; the rest are counted


@dataclass(frozen=True)
class DataIdentity:
    """Which samples a source holds, in order: its kind and one entry per file or shard."""

    kind: str  # "files" | "shards"
    entries: tuple[tuple[str, int, int | str], ...]

    @cached_property
    def digest(self) -> str:
        """``<kind>:<sha256 hex>`` of the entries' canonical JSON (see the module docstring)."""
        return f"{self.kind}:{hashlib.sha256(self._canonical).hexdigest()}"

    @cached_property
    def _canonical(self) -> bytes:
        return json.dumps(self.entries, separators=(",", ":")).encode("ascii")

    def record(self) -> dict[str, Any]:
        """A plain dict for a checkpoint (``torch.load(weights_only=True)`` reads it back). zlib's
        fastest level: a few percent larger than its default, several times faster."""
        return {"kind": self.kind, "digest": self.digest, "count": len(self.entries),
                "entries": zlib.compress(self._canonical, 1)}

    def differences(self, record: dict[str, Any]) -> str | None:
        """None when ``record`` (a saved ``record()``) is this identity; else what changed, naming
        a few of the entries that differ."""
        if record.get("digest") == self.digest:
            return None
        if record.get("kind") != self.kind:
            return f"the saved run read {record.get('kind')}, this data is {self.kind}"
        saved = [tuple(e) for e in json.loads(zlib.decompress(record["entries"]))]
        return _changes(saved, list(self.entries), unit="file" if self.kind == "files" else "shard")


def data_identity(source: ImageFolderData | WebDatasetShards) -> DataIdentity:
    """The identity of ``source``: its files' or shards' entries (see the module docstring).

    Local loose files cost one ``stat`` each; a bucket's files and any shards none.
    """
    if isinstance(source, ImageFolderData):
        return _files_identity(source)
    if isinstance(source, WebDatasetShards):
        return _shards_identity(source)
    raise TypeError(f"no identity for a {type(source).__name__}; "
                    "expected ImageFolderData or WebDatasetShards")


def _files_identity(data: ImageFolderData) -> DataIdentity:
    listed = getattr(data, "sizes", ())  # a bucket's listing (S3ImageFolder); local files are stat'ed
    sizes = listed if listed else [_local_size(path) for path in data.files]
    entries = tuple((_relative(path, data.root), int(label), int(size))
                    for path, label, size in zip(data.files, data.labels, sizes, strict=True))
    return DataIdentity("files", entries)


def _local_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as err:
        raise DatasetError(f"{path} cannot be read ({err.strerror}); restore it or leave it out of "
                           "the data") from None


def _shards_identity(shards: WebDatasetShards) -> DataIdentity:
    entries = tuple((_relative(tar, shards.root), int(samples), checksum or int(size))
                    for tar, samples, size, checksum in zip(shards.shards, shards.shard_samples,
                                                            shards.shard_bytes, shards.shard_sha256,
                                                            strict=True))
    return DataIdentity("shards", entries)


def _relative(path: str, root: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` in POSIX form, for a local path or an ``s3://`` URL."""
    if is_s3_url(str(root)):
        return posixpath.relpath(str(path), str(root))  # both are URLs: the scheme cancels out
    return Path(os.path.relpath(path, root)).as_posix()


def _changes(saved: list[tuple], current: list[tuple], *, unit: str) -> str:
    """What turns ``saved`` into ``current``: entries removed, added, changed (same name, another
    label, size or checksum), or the same entries in another order."""
    before = {e[0]: e for e in saved}
    after = {e[0]: e for e in current}
    removed = [name for name in before if name not in after]
    added = [name for name in after if name not in before]
    changed = [name for name in after if name in before and after[name] != before[name]]
    parts = [f"{len(names)} {unit}(s) {verb} ({_few(names)})"
             for verb, names in (("removed", removed), ("added", added), ("changed", changed)) if names]
    if not parts:
        return f"the same {unit}s in another order"
    return f"{', '.join(parts)}; {len(saved)} {unit}s then, {len(current)} now"


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
