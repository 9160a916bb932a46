"""A JSON cache of verification results, keyed by path, size, mtime and ctime.

A second verification of unchanged data then costs one ``stat`` per file. ctime is part of
the key because ``chmod`` changes it, so a file made unreadable is checked again. One cache
file per data set root, written atomically (rename), so concurrent runs never read a half file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from dali_pipelines._util.atomic import atomic_write

_logger = logging.getLogger(__name__)

_VERSION = 2
DEEP, HEADER = "deep", "header"

StatKey = tuple[int, int, int]  # size, mtime_ns, ctime_ns


def stat_key(st: os.stat_result) -> StatKey:
    """The part of a file's stat that says whether a cached result still holds."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def root_tag(root: str | os.PathLike[str]) -> str:
    """``<name>-<hash of the resolved path>``: a file name part unique to a data set root."""
    resolved = str(Path(root).resolve())
    return f"{Path(resolved).name}-{hashlib.sha1(resolved.encode('utf-8')).hexdigest()[:12]}"


class VerifyCache:
    """Results of earlier checks for one data set root; ``lookup`` misses when anything changed."""

    def __init__(self, path: Path, root: str | os.PathLike[str] = "/") -> None:
        self.path = path
        # Entries are keyed by path relative to the root: a smaller file, faster to load.
        self._prefix = os.path.join(str(root), "")
        self._entries: dict[str, list[Any]] = self._load()
        self._dirty = False

    @classmethod
    def for_root(cls, cache_dir: str | os.PathLike[str], root: str | os.PathLike[str]) -> VerifyCache:
        """The cache file for data set ``root`` inside ``cache_dir`` (created on save)."""
        return cls(Path(cache_dir) / f"verify-{root_tag(root)}.json", Path(root).resolve())

    def _load(self) -> dict[str, list[Any]]:
        if not self.path.is_file():
            return {}
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            _logger.warning("ignoring unreadable verify cache %s (%s); checking every file again",
                            self.path, err)
            return {}
        if not isinstance(payload, dict) or payload.get("version") != _VERSION:
            _logger.info("verify cache %s has another format; checking every file again", self.path)
            return {}
        entries = payload.get("entries", {})
        if not isinstance(entries, dict):
            _logger.warning("verify cache %s has no entries table; checking every file again", self.path)
            return {}
        return entries

    def lookup(self, path: str, key: StatKey, *, deep: bool, max_pixels: int) -> tuple[bool, str | None]:
        """(hit, reason): a hit needs the same stat key and pixel limit, and a deep result if deep.

        A file found bad by the header pass is bad for a deep check too, so that result is reused.
        """
        entry = self._entries.get(self._key(path))
        if entry is None or len(entry) != 6:
            return False, None
        size, mtime_ns, ctime_ns, level, limit, reason = entry
        if (size, mtime_ns, ctime_ns) != key or limit != max_pixels:
            return False, None
        if deep and level != DEEP and reason is None:
            return False, None
        return True, reason

    def store(self, path: str, key: StatKey, *, deep: bool, max_pixels: int, reason: str | None) -> None:
        """Remember one file's result under its stat key."""
        self._entries[self._key(path)] = [*key, DEEP if deep else HEADER, max_pixels, reason]
        self._dirty = True

    def _key(self, path: str) -> str:
        return path[len(self._prefix):] if path.startswith(self._prefix) else path

    def save(self) -> None:
        """Write the cache if anything was stored (write a temporary file, then rename)."""
        if not self._dirty:
            return
        with atomic_write(self.path, encoding="utf-8") as handle:
            json.dump({"version": _VERSION, "entries": self._entries}, handle)
        self._dirty = False
        _logger.debug("verify cache saved: %s (%d entries)", self.path, len(self._entries))
