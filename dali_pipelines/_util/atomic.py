"""Files replaced whole or not at all: write a temporary file, fsync it, rename it into place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a hidden per-process temporary beside ``path``; on a clean exit, fsync and rename it.

    Rename is atomic on POSIX file systems, so readers (and a crash at any point) see the old
    file or the new one, never half of one. A crash leaves only the ``.<name>.tmp-<pid>`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, mode, **open_kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_write(path, encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)
        handle.write("\n")
