"""The stat pass: one ``stat`` per file before any file is opened. It gives each file its cache
key, refuses what must never be opened or listed (a FIFO, a device or a folder; a file that is
gone; a name a DALI file list cannot hold), and digests the whole listing, names and keys, so
an unchanged data set is known from its digest alone. Keys are kept in arrays (24 bytes a file),
never as ``os.stat_result`` objects.

The pass costs about one ``stat`` system call per file, which releases the GIL: chunks of files
are statted on a few threads, so on a machine with cores to spare the calls overlap."""

from __future__ import annotations

import array
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dali_pipelines._util.file_list_names import unlistable_names
from dali_pipelines.verify.headers import non_regular_reason, os_reason

CHUNK = 4096  # files per step of every pass: what bounds a pass's memory
STAT_THREADS = 4  # at most; fewer on a machine with fewer cores
_FORMAT = b"dali-pipelines-stat-pass/1\0"


@dataclass(frozen=True)
class StatPass:
    """Every file's key (size, mtime, ctime in ns; -1 for a refused file), the refused ones with
    their reasons, and the digest of the listing."""

    sizes: array.array
    mtimes: array.array
    ctimes: array.array
    refused: dict[int, str]  # file index -> reason
    digest: str

    def key(self, index: int) -> tuple[int, int, int]:
        """The cache key of file ``index``."""
        return self.sizes[index], self.mtimes[index], self.ctimes[index]


def stat_pass(files: Sequence[str], root: str) -> StatPass:
    """Stat every file of ``files`` (names relative to ``root`` are what a file list holds)."""
    prefix = os.path.join(root, "")
    sizes, mtimes, ctimes = array.array("q"), array.array("q"), array.array("q")
    refused: dict[int, str] = {}
    digest = hashlib.blake2b(_FORMAT, digest_size=16)
    threads = max(1, min(STAT_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start, part in _in_order(pool, lambda s: _chunk(files[s:s + CHUNK], s, prefix),
                                     range(0, len(files), CHUNK), ahead=2 * threads):
            digest.update("\0".join(files[start:start + CHUNK]).encode("utf-8", "surrogateescape") + b"\0")
            sizes.extend(part.sizes)
            mtimes.extend(part.mtimes)
            ctimes.extend(part.ctimes)
            refused |= part.refused
    for column in (sizes, mtimes, ctimes):
        digest.update(column.tobytes())
    return StatPass(sizes, mtimes, ctimes, refused, digest.hexdigest())


def _in_order(pool: ThreadPoolExecutor, work: Callable[[int], StatPass], starts: Iterable[int],
              ahead: int) -> Iterator[tuple[int, StatPass]]:
    """(start, work(start)) in order, with at most ``ahead`` chunks submitted and not yet taken."""
    pending: deque[tuple[int, Future[StatPass]]] = deque()
    for start in starts:
        pending.append((start, pool.submit(work, start)))
        if len(pending) >= ahead:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


def _chunk(chunk: Sequence[str], start: int, prefix: str) -> StatPass:
    """The stat pass over one chunk (file indices from ``start``); its digest is left empty."""
    refused = unlistable_names(chunk, start, prefix)
    sizes, mtimes, ctimes = array.array("q"), array.array("q"), array.array("q")
    stat_of, is_regular = os.stat, stat.S_ISREG
    for index, path in enumerate(chunk, start):
        if index not in refused:
            try:
                st = stat_of(path)
            except OSError as err:
                refused[index] = os_reason(err)
            else:
                if is_regular(st.st_mode):
                    sizes.append(st.st_size)
                    mtimes.append(st.st_mtime_ns)
                    ctimes.append(st.st_ctime_ns)
                    continue
                refused[index] = non_regular_reason(st.st_mode)
        sizes.append(-1)
        mtimes.append(-1)
        ctimes.append(-1)
    return StatPass(sizes, mtimes, ctimes, refused, "")
