"""Durable whole-file writes: a temporary beside the file, fsynced, renamed over it, and the
folder fsynced, so readers and a crash see the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *,
                 temp: str | os.PathLike[str] | None = None, **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary beside ``path``; on a clean exit, fsync it, rename it over ``path`` and
    fsync the folder, which makes the rename itself survive a power loss.

    The temporary is ``.<name>.tmp-<pid>`` unless ``temp`` names it (a fixed name lets a rerun
    overwrite what an interrupted run left). An exception leaves it behind, as a crash would,
    and ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temp) if temp is not None else path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, mode, **open_kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike[str], content: str | bytes, *,
                 temp: str | os.PathLike[str] | None = None) -> None:
    """Replace ``path`` with ``content`` (text as UTF-8, or bytes), durably."""
    if isinstance(content, bytes):
        with atomic_write(path, "wb", temp=temp) as handle:
            handle.write(content)
    else:
        with atomic_write(path, encoding="utf-8", temp=temp) as handle:
            handle.write(content)


def write_json_atomic(path: str | os.PathLike[str], value: Any, *, indent: int | None = 1) -> None:
    """Replace ``path`` with ``value`` as JSON (``indent=None``: on one line), durably."""
    write_atomic(path, json.dumps(value, indent=indent) + "\n")


def _fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        # Some file systems (network, FUSE) cannot sync a folder; the rename has still happened.
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
