"""The verification cache: one SQLite file per data set root, updated in place with what changed
and read only as far as a run needs it.

``entries`` holds one row per file: its name (relative to the root), the key it was checked
under (a local file's size, mtime and ctime in nanoseconds: ``chmod`` changes ctime, so a file
made unreadable is checked again; an object in a bucket: its size and ETag; any tuple of up to
three scalars), the check's level, the pixel limit and the reason (NULL: good). ``listings``
holds whole runs, each under a digest of every file's name and key: a run over unchanged data
finds its listing and reads no row of ``entries``. Rows are committed in batches as a pass goes,
so an interrupted pass keeps what it checked. A file that does not read as this format's cache
is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dali_pipelines._util.atomic import write_atomic
from dali_pipelines.verify.headers import READ_ERROR

_logger = logging.getLogger(__name__)

# 4: SQLite (3 was one JSON file); the header pass hands files it cannot vouch for to DALI's
# decoder and refuses files too small for the pixels their header claims.
_VERSION = "4"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, k1, k2, k3, deep INTEGER NOT NULL, "
    "max_pixels INTEGER NOT NULL, reason TEXT) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS listings (digest TEXT NOT NULL, deep INTEGER NOT NULL, max_pixels INTEGER "
    "NOT NULL, bad TEXT NOT NULL, used REAL NOT NULL, PRIMARY KEY (digest, deep, max_pixels))",
)
_LISTINGS_KEPT = 8  # whole-run results kept per data set (other pixel limits, levels, versions)
_COMMIT_ROWS = 8192  # stored rows per commit: progress survives an interruption, commits stay few
_QUERY_NAMES = 900  # names per SELECT ... IN (...): below every SQLite's variable limit
Key = tuple[Any, ...]


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


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """A local file's cache key: size, mtime and ctime (nanoseconds)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def cacheable(reason: str | None) -> bool:
    """Read errors are never kept: they may pass next time."""
    return not (reason or "").startswith(READ_ERROR)


class VerifyCache:
    """Results of one kind of check for the data set at ``root``, kept in ``cache_dir`` (None: not
    kept; every lookup misses). A context manager: leaving it commits what was stored."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None, root: str | os.PathLike[str], *,
                 deep: bool, max_pixels: int) -> None:
        self.path = Path(cache_dir) / f"verify-{_root_tag(root)}.sqlite" if cache_dir is not None else None
        self._deep, self._max_pixels = int(deep), max_pixels
        self._prefix = os.path.join(_resolved(root), "")  # keys are relative: a smaller file
        self._pending: list[tuple[Any, ...]] = []
        self._db = self._open() if self.path is not None else None

    def _open(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.with_suffix(".json").unlink(missing_ok=True)  # the format before SQLite, never read
        db = sqlite3.connect(self.path, timeout=60)
        try:
            version = _version(db)
        except sqlite3.DatabaseError as err:  # not a database, or a damaged one
            _logger.warning("rebuilding verify cache %s (%s)", self.path, err)
            db.close()
            self.path.unlink()
            db, version = sqlite3.connect(self.path, timeout=60), ""
        if version != _VERSION:
            if version is not None:
                _logger.warning("rebuilding verify cache %s (another format)", self.path)
            _reset(db)
        return db

    def __enter__(self) -> VerifyCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def empty(self) -> bool:
        """No file's result is kept (every lookup would miss)."""
        return self._db is None or self._db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None

    def lookup(self, path: str, key: Key) -> tuple[bool, str | None]:
        """(hit, reason) of one file; see ``lookup_many``."""
        return self.lookup_many([path], [key])[0]

    def lookup_many(self, paths: Sequence[str], keys: Sequence[Key]) -> list[tuple[bool, str | None]]:
        """(hit, reason) per file: a hit needs the same key and pixel limit, and if ``deep`` a decode;
        a file the header pass found bad is bad for a deep check too."""
        if self._db is None:
            return [(False, None)] * len(paths)
        names = [p.removeprefix(self._prefix) for p in paths]
        rows: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(names), _QUERY_NAMES):
            part = names[start:start + _QUERY_NAMES]
            query = ("SELECT name, k1, k2, k3, deep, max_pixels, reason FROM entries WHERE name IN "
                     f"({','.join('?' * len(part))})")
            rows.update((row[0], row[1:]) for row in self._db.execute(query, part))
        return [self._judge(rows.get(name), key) for name, key in zip(names, keys, strict=True)]

    def _judge(self, row: tuple[Any, ...] | None, key: Key) -> tuple[bool, str | None]:
        if row is None:
            return False, None
        *stored, deep, limit, reason = row
        if tuple(stored) != _padded(key) or limit != self._max_pixels or (
                self._deep and not deep and reason is None):
            return False, None
        return True, reason

    def store(self, path: str, key: Key, reason: str | None) -> None:
        """Remember one file's result (committed in batches); read errors are never kept."""
        if self._db is None or not cacheable(reason):
            return
        self._pending.append((path.removeprefix(self._prefix), *_padded(key), self._deep, self._max_pixels,
                              reason))
        if len(self._pending) >= _COMMIT_ROWS:
            self.save()

    def save(self) -> None:
        """Write the stored rows and commit."""
        if self._db is None or not self._pending:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def listing(self, digest: str) -> dict[str, str] | None:
        """The bad files (name -> reason) of a whole run whose files had ``digest``; None if unknown.
        A deep run's listing stands for a header pass too."""
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT bad, deep FROM listings WHERE digest = ? AND max_pixels = ? AND deep >= ? "
            "ORDER BY deep DESC",             (digest, self._max_pixels, self._deep)).fetchone()
        if row is None:
            return None
        with self._db:
            self._db.execute("UPDATE listings SET used = ? WHERE digest = ? AND deep = ? AND max_pixels = ?",
                             (time.time(), digest, row[1], self._max_pixels))
        prefix = self._prefix
        return {name if os.path.isabs(name) else prefix + name: reason
                for name, reason in json.loads(row[0]).items()}

    def store_listing(self, digest: str, bad: dict[str, str]) -> None:
        """Remember a whole run's outcome (every result in it cacheable); keep the newest few."""
        if self._db is None:
            return
        self.save()
        names = {path.removeprefix(self._prefix): reason for path, reason in bad.items()}
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO listings VALUES (?, ?, ?, ?, ?)",
                             (digest, self._deep, self._max_pixels, json.dumps(names), time.time()))
            self._db.execute("DELETE FROM listings WHERE rowid NOT IN (SELECT rowid FROM listings ORDER BY "
                             "used DESC LIMIT ?)", (_LISTINGS_KEPT,))

    def close(self) -> None:
        """Commit what was stored and close the file."""
        if self._db is not None:
            self.save()
            self._db.close()
            self._db = None


def _padded(key: Key) -> tuple[Any, ...]:
    if len(key) > 3:
        raise ValueError(f"a cache key has at most 3 parts, got {key!r}")
    return (*key, *(None,) * (3 - len(key)))


def _version(db: sqlite3.Connection) -> str | None:
    """The cache format's version; None for a new file, "" for tables of no known format."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone() if "meta" in tables else None
    return "" if row is None else str(row[0])


def _reset(db: sqlite3.Connection) -> None:
    """Drop every table and create this version's."""
    with db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f'DROP TABLE "{name}"')
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('version', ?)", (_VERSION,))
