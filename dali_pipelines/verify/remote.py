"""Verification of images in a bucket: the header pass of ``headers`` on ranged GETs (the first
block, and the tail where an end marker is looked for), DALI's decoder on whole objects where it
must judge; results cached by size and ETag, so a second run costs no request beyond the listing."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, cast

import numpy as np

from dali_pipelines._util.file_list_names import unlistable_names
from dali_pipelines.sources.bucket import REQUEST_THREADS, bucket_client, read_object
from dali_pipelines.sources.s3 import S3ImageFolder
from dali_pipelines.verify.cache import VerifyCache
from dali_pipelines.verify.headers import Header, check_stream, os_reason
from dali_pipelines.verify.passes import check_files
from dali_pipelines.verify.report import VerifyReport
from dali_pipelines.verify.stats import CHUNK

_logger = logging.getLogger(__name__)

# One GET covers the start of a file: the magic number, a JPEG's segment headers (EXIF and ICC
# segments included, as a rule) and what Pillow parses for the size. The tail is a second GET.
HEAD_BYTES = 64 * 1024
_KEPT_SPANS = 4  # fetched ranges kept per object: the head and the latest reads


class RangedObject(io.RawIOBase):
    """A read-only, seekable file over one object, fetching only the ranges that are read.

    ``read(n)`` returns ``n`` bytes unless the object ends first (the header checks rely on it);
    a read outside every fetched range fetches at least ``HEAD_BYTES`` from there.
    """

    def __init__(self, client: Any, url: str, size: int) -> None:
        super().__init__()
        self.url, self.size = url, size
        self._client = client
        self._pos = 0
        self._spans: list[tuple[int, bytes]] = []
        self.requests = 0
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        want = self.size - self._pos if n is None or n < 0 else min(n, self.size - self._pos)
        parts = []
        while want > 0:
            chunk = self._at(self._pos, want)
            parts.append(chunk)
            self._pos += len(chunk)
            want -= len(chunk)
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _at(self, pos: int, want: int) -> bytes:
        """Up to ``want`` bytes at ``pos`` from a fetched range, fetching one when none holds ``pos``."""
        for start, data in self._spans:
            if start <= pos < start + len(data):
                return data[pos - start:pos - start + want]
        end = min(self.size, pos + max(want, HEAD_BYTES))
        data = read_object(self._client, self.url, pos, end - 1)  # OSError (with errno) on failure
        if not data:
            raise OSError(5, f"{self.url}: the object ended at byte {pos} of a listed {self.size}")
        self.requests += 1
        self.bytes_fetched += len(data)
        self._spans = [*self._spans[:1], *self._spans[1:][-(_KEPT_SPANS - 2):], (pos, data)]
        return data[:want]


def check_object(client: Any, url: str, size: int, max_pixels: int) -> Header:
    """The header pass on the object at ``url`` (``size`` bytes, as listed); never raises."""
    try:
        with RangedObject(client, url, size) as stream:
            # read/seek/tell are all the header pass (and Pillow's plugin) call on a BinaryIO
            return check_stream(cast(BinaryIO, stream), size, max_pixels)
    except OSError as err:
        return Header(os_reason(err))


def _checker(client: Any, keys: dict[str, tuple[int, str]]) -> Callable[[str, int], Header]:
    """The header pass on an object of ``keys`` (url -> (size, ETag)), as ``check_files`` calls it."""
    return lambda url, limit: check_object(client, url, keys[url][0], limit)


def _reader(client: Any) -> Callable[[str], np.ndarray]:
    """An object's bytes, as DALI's decoder takes them."""
    return lambda url: np.frombuffer(read_object(client, url), dtype=np.uint8)


def verify_objects(data: S3ImageFolder, *, deep: bool, max_pixels: int, workers: int | None,
                   cache_dir: Any) -> VerifyReport:
    """``verify_data`` for a tree in a bucket: the results of objects whose size and ETag are
    unchanged come from the cache; the others are read in ranges on ``REQUEST_THREADS`` threads.
    A chunk of objects at a time, as the local pass goes: what a run holds is the bad objects. A
    key a DALI file list cannot hold is refused before any request, as a local name is."""
    start, report = time.perf_counter(), VerifyReport(data)
    bad: dict[str, str] = {}
    prefix = str(data.root).rstrip("/") + "/"
    client: Any = None
    threads = max(workers or 0, REQUEST_THREADS)
    with VerifyCache(cache_dir, data.root, deep=deep, max_pixels=max_pixels) as cache, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        for first in range(0, len(data), CHUNK):
            refused = unlistable_names(data.files[first:first + CHUNK], first, prefix)
            bad |= {data.files[i]: reason for i, reason in refused.items()}  # a key may hold a line break
            chunk = [i for i in range(first, min(first + CHUNK, len(data))) if i not in refused]
            urls = [data.files[i] for i in chunk]
            keys = {data.files[i]: (data.sizes[i], data.etags[i]) for i in chunk}
            found = cache.lookup_many(urls, list(keys.values()))
            bad |= {url: reason for url, (hit, reason) in zip(urls, found, strict=True) if hit and reason}
            todo = [url for url, (hit, _) in zip(urls, found, strict=True) if not hit]
            if todo and client is None:
                client = bucket_client()
            results = check_files(todo, deep=deep, max_pixels=max_pixels, workers=threads, pool=pool,
                                  check=_checker(client, keys), read=_reader(client)) if todo else {}
            for url in todo:
                cache.store(url, keys[url], results[url])
            bad |= {url: reason for url, reason in results.items() if reason is not None}
            report.checked += len(todo)
            report.cached += len(urls) - len(todo)
    report.bad = {url: bad[url] for url in data.files if url in bad} if bad else {}
    _logger.info("verified %d objects under %s (%s; %d read, %d from cache) in %.2f s: %d bad", len(data),
                 data.root, "deep" if deep else "ranged header pass", report.checked, report.cached,
                 time.perf_counter() - start, len(report.bad))
    return report
