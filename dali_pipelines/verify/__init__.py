"""Verify image files before a DALI graph is built: one bad file kills a DALI pipeline for good.

A stat pass (``stats``) keys every file and refuses what must not be opened; a header pass
(``headers``) reads each file's header and tail; DALI's own decoder (``decode``) then judges what
a header cannot vouch for, or with ``deep=True`` every file. Results are cached (``cache``), and
every pass goes a chunk of files at a time, so memory stays bounded at any data set size.
``prepare_data`` is what training and benchmarks call: verify (cached), then fail or skip;
``judge_data`` gives the same decision as a ``Verdict`` that other ranks apply without reading.
Objects in a bucket are checked by ranged reads (``remote``); tar shards by ``shards``
(``prepare_shards``): each against its recorded checksum, or member by member."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import overload

from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.sources.s3 import S3ImageFolder
from dali_pipelines.sources.webdataset import WebDatasetShards
from dali_pipelines.verify.cache import VerifyCache, cacheable, write_bad_list
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS
from dali_pipelines.verify.passes import check_files
from dali_pipelines.verify.remote import verify_objects
from dali_pipelines.verify.report import VerifyReport
from dali_pipelines.verify.shards import ShardReport, prepare_shards, verify_shards
from dali_pipelines.verify.stats import CHUNK, StatPass, stat_pass
from dali_pipelines.verify.verdict import Verdict, listing_digest, verdict_for

_logger = logging.getLogger(__name__)


__all__ = ["DEFAULT_MAX_PIXELS", "BadFilesError", "ShardReport", "Verdict", "VerifyReport", "judge_data",
           "listing_digest", "prepare_data", "prepare_shards", "verify_data", "verify_shards"]

_LISTED = 20  # bad files named in an error message; the rest are counted
_PROGRESS_S = 10.0  # seconds between progress lines of a long pass


def verify_data(data: ImageFolderData, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                workers: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every file of ``data``; results for unchanged files come from ``cache_dir``.

    A data set whose every file has the name and key of a past run's costs its stat pass and one
    query; otherwise each chunk of files is looked up, and what is new or changed is read."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if isinstance(data, S3ImageFolder):  # objects in a bucket: ranged reads, cached by ETag
        return verify_objects(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    start, report = time.perf_counter(), VerifyReport(data)
    stats = stat_pass(data.files, str(data.root))
    with VerifyCache(cache_dir, data.root, deep=deep, max_pixels=max_pixels) as cache:
        known = cache.listing(stats.digest)
        if known is not None:
            bad, report.cached = known, len(data) - len(stats.refused)
        else:
            bad = _check_all(data.files, stats, cache, report, deep=deep, max_pixels=max_pixels,
                             workers=workers or default_num_threads())
            if all(cacheable(reason) for reason in bad.values()):  # else the next run reads them again
                cache.store_listing(stats.digest, bad)
    bad |= {data.files[i]: reason for i, reason in stats.refused.items()}
    report.bad = {path: bad[path] for path in data.files if path in bad} if bad else {}
    _logger.info("verified %d files under %s (%s; %d checked, %d from cache) in %.2f s: %d bad", len(data),
                 data.root, "deep" if deep else "header pass", report.checked, report.cached,
                 time.perf_counter() - start, len(report.bad))
    return report


def _check_all(files: Sequence[str], stats: StatPass, cache: VerifyCache, report: VerifyReport, *,
               deep: bool, max_pixels: int, workers: int) -> dict[str, str]:
    """Look each chunk up in the cache and read what it misses; the bad files (path -> reason)."""
    bad: dict[str, str] = {}
    use_cache, shown = not cache.empty, time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for start in range(0, len(files), CHUNK):
            indices = [i for i in range(start, min(start + CHUNK, len(files))) if i not in stats.refused]
            paths, keys = [files[i] for i in indices], [stats.key(i) for i in indices]
            found = cache.lookup_many(paths, keys) if use_cache else [(False, None)] * len(paths)
            bad |= {path: reason for path, (hit, reason) in zip(paths, found, strict=True) if hit and reason}
            todo = {path: key for path, key, (hit, _) in zip(paths, keys, found, strict=True) if not hit}
            results = check_files(list(todo), deep=deep, max_pixels=max_pixels, workers=workers, pool=pool)
            for path, key in todo.items():
                cache.store(path, key, results[path])
            bad |= {path: reason for path, reason in results.items() if reason is not None}
            report.checked += len(todo)
            report.cached += len(paths) - len(todo)
            if time.perf_counter() - shown > _PROGRESS_S:
                shown = time.perf_counter()
                _logger.info("verifying: %d of %d files done, %d bad so far", min(start + CHUNK, len(files)),
                             len(files), len(bad))
    finally:  # on Ctrl-C: the queued reads are dropped, the running ones end within a file
        pool.shutdown(wait=True, cancel_futures=True)
    return bad


class BadFilesError(DatasetError):
    """Files DALI would fail on (``bad``: path -> reason); the message lists them and says the fix.
    ``emptied``: classes that skipping the files would leave without any (refused, as an empty
    class folder is refused by the scan)."""

    def __init__(self, report: VerifyReport, *, none_usable: bool = False,
                 emptied: tuple[str, ...] = ()) -> None:
        root, more = report.data.root, len(report.bad) - _LISTED
        lines = [f"{len(report.bad)} of {len(report.data)} files under {root} would stop DALI:"]
        lines += [f"  {name}: {reason}" for name, reason in report.named_bad()[:_LISTED]]
        lines += [f"  ... and {more} more"] if more > 0 else []
        if none_usable:
            lines.append(f"No file under {root} is usable, so skipping bad files leaves nothing: re-encode "
                         "them or point at the right data.")
        elif emptied:
            lines.append(f"Skipping them would leave {len(emptied)} class{'es' if len(emptied) > 1 else ''} "
                         f"without a single file ({', '.join(emptied[:_LISTED])}), which is refused as an "
                         "empty class folder is: re-encode those files, or remove the class from the data.")
        else:
            lines.append(f"Fix: remove or re-encode these files (full list: python -m dali_pipelines verify "
                         f"{root}), or pass --on-bad-file skip to leave them out.")
        super().__init__("\n".join(lines))
        self.bad = report.bad


def judge_data(data: ImageFolderData, *, on_bad_file: str = "error",
               cache_dir: str | os.PathLike[str] | None = None, deep: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None) -> Verdict:
    """Verify ``data`` and decide: raise ``BadFilesError`` on bad files (``error``; with ``skip`` when
    nothing usable or a class without files would be left), else the verdict leaving them out
    (``skip``: listed with reasons in ``cache_dir``, else the temp folder). Its ``apply`` gives the
    data to train on, here and on ranks that never read a file."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    report = verify_data(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    if report.ok:
        return Verdict(listing_digest(data))
    clean = report.clean()
    emptied = _emptied_classes(data, clean)
    if on_bad_file == "error" or not len(clean) or emptied:
        raise BadFilesError(report, none_usable=not len(clean), emptied=emptied)
    where = write_bad_list(Path(cache_dir or tempfile.gettempdir()), data.root, report.bad)
    _logger.warning("skipping %d of %d files under %s that DALI cannot decode; list with reasons: %s",
                    len(report.bad), len(data), data.root, where)
    return verdict_for(data, report.bad)


@overload
def prepare_data(data: ImageFolderData, *, on_bad_file: str = ...,
                 cache_dir: str | os.PathLike[str] | None = ..., deep: bool = ..., max_pixels: int = ...,
                 workers: int | None = ...) -> ImageFolderData: ...
@overload
def prepare_data(data: WebDatasetShards, *, on_bad_file: str = ...,
                 cache_dir: str | os.PathLike[str] | None = ..., deep: bool = ..., max_pixels: int = ...,
                 workers: int | None = ...) -> WebDatasetShards: ...
@overload
def prepare_data(data: WebDatasetShards | ImageFolderData, *, on_bad_file: str = ...,
                 cache_dir: str | os.PathLike[str] | None = ..., deep: bool = ..., max_pixels: int = ...,
                 workers: int | None = ...) -> WebDatasetShards | ImageFolderData: ...
def prepare_data(data: WebDatasetShards | ImageFolderData, *, on_bad_file: str = "error",
                 cache_dir: str | os.PathLike[str] | None = None, deep: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 workers: int | None = None) -> WebDatasetShards | ImageFolderData:
    """Verify ``data`` before a graph is built: ``judge_data``, applied (the data itself when no file
    is bad, else a copy without the skipped files; a skip that would leave a class without any
    file is refused, as an empty class folder is at scan time). Shards are checked as a whole
    (``prepare_shards``: each against its recorded checksum), so ``skip`` does not apply."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    if isinstance(data, WebDatasetShards):
        return prepare_shards(data, cache_dir=cache_dir, deep=deep, workers=workers)
    verdict = judge_data(data, on_bad_file=on_bad_file, cache_dir=cache_dir, deep=deep, max_pixels=max_pixels,
                         workers=workers)
    return verdict.apply(data)


def _emptied_classes(data: ImageFolderData, clean: ImageFolderData) -> tuple[str, ...]:
    """The classes ``data`` has files of and ``clean`` has none of."""
    gone = set(data.labels) - set(clean.labels)
    return tuple(data.classes[label] for label in sorted(gone))
