"""A JSON cache of verification results per data set root, keyed by path, size, mtime and ctime: a
second run over unchanged data costs one ``stat`` per file (``chmod`` changes ctime, so a file made
unreadable is checked again). Objects in a bucket are keyed by size and ETag instead (``stat_key``
is one kind of key; any tuple of JSON scalars works). Replaced atomically: concurrent runs never
read half of it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from dali_pipelines._util.atomic import write_atomic, write_json_atomic
from dali_pipelines.verify.headers import READ_ERROR

_logger = logging.getLogger(__name__)

# The file: {"version": 3, "entries": {path (relative to the root): [size, mtime_ns, ctime_ns,
# "header" | "deep", max_pixels, reason or null]}}. A "header" result includes DALI's decode of
# the files whose header cannot vouch for them. A file of any other version is ignored.
_VERSION = 3


def write_bad_list(folder: Path, root: str | os.PathLike[str], bad: dict[str, str]) -> Path:
    """Write "<path><TAB><reason>" per bad file into ``folder``, named after the data set like its cache."""
    path = folder / f"bad-files-{_root_tag(root)}.tsv"
    write_atomic(path, "".join(f"{p}\t{r}\n" for p, r in bad.items()))
    return path


def _root_tag(root: str | os.PathLike[str]) -> str:
    """``<name>-<hash of the resolved path>``: two data sets called "train" get different files."""
    resolved = _resolved(root)
    name = resolved.rstrip("/").rsplit("/", 1)[-1]
    return f"{name}-{hashlib.sha1(resolved.encode('utf-8')).hexdigest()[:12]}"


def _resolved(root: str | os.PathLike[str]) -> str:
    """A local root resolved; a URL (``s3://bucket/prefix``) as it is."""
    return str(root) if "://" in str(root) else str(Path(root).resolve())


class VerifyCache:
    """Results of one kind of check for the data set at ``root``, kept in ``cache_dir`` (None: not kept)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None, root: str | os.PathLike[str], *,
                 deep: bool, max_pixels: int) -> None:
        self.path = Path(cache_dir) / f"verify-{_root_tag(root)}.json" if cache_dir is not None else None
        self._deep, self._max_pixels = deep, max_pixels
        self._prefix = os.path.join(_resolved(root), "")  # keys are relative: a smaller file
        self._entries = self._load()
        self._stored = 0

    def _load(self) -> dict[str, list[Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = None
        current = isinstance(payload, dict) and payload.get("version") == _VERSION
        if not (current and isinstance(payload.get("entries"), dict)):
            _logger.warning("ignoring verify cache %s (unreadable, or another format)", self.path)
            return {}
        return payload["entries"]

    def lookup(self, path: str, key: tuple[Any, ...]) -> tuple[bool, str | None]:
        """(hit, reason): a hit needs the same ``key`` (``stat_key``: size, mtime, ctime) and pixel
        limit, and if ``deep`` a decode; a file the header pass found bad is bad for a deep check too."""
        entry = self._entries.get(path.removeprefix(self._prefix))
        if not (isinstance(entry, list) and len(entry) == len(key) + 3):
            return False, None
        *stored, level, limit, reason = entry
        if tuple(stored) != key or limit != self._max_pixels or (
                self._deep and level != "deep" and reason is None):
            return False, None
        return True, reason

    def store(self, path: str, key: tuple[Any, ...], reason: str | None) -> None:
        """Remember one file's result under ``key``; read errors are never kept (they may pass next time)."""
        if not (reason or "").startswith(READ_ERROR):
            level = "deep" if self._deep else "header"
            self._entries[path.removeprefix(self._prefix)] = [*key, level, self._max_pixels, reason]
            self._stored += 1

    def save(self) -> None:
        """Write the cache if anything was stored (a temporary file, then a rename)."""
        if self.path is not None and self._stored:
            write_json_atomic(self.path, {"version": _VERSION, "entries": self._entries}, indent=None)


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """A local file's cache key: size, mtime and ctime (nanoseconds)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns
