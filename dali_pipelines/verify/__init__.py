"""Verify image files before a DALI graph is built: one bad file kills a DALI pipeline for good.

A header pass (``headers``) reads each file's header and tail; DALI's own decoder (``decode``) then
judges what a header cannot vouch for, or with ``deep=True`` every file. ``prepare_data`` is what
training and benchmarks call: verify (cached), then fail or skip. Tar shards are checked by ``shards``
(``prepare_shards``): each against its recorded checksum, or member by member."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import overload

from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.sources.s3 import S3ImageFolder
from dali_pipelines.sources.webdataset import WebDatasetShards
from dali_pipelines.verify.cache import VerifyCache, stat_key, write_bad_list
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS, os_reason
from dali_pipelines.verify.passes import check_files
from dali_pipelines.verify.remote import verify_objects
from dali_pipelines.verify.report import VerifyReport
from dali_pipelines.verify.shards import ShardReport, prepare_shards, verify_shards

_logger = logging.getLogger(__name__)


__all__ = ["DEFAULT_MAX_PIXELS", "BadFilesError", "ShardReport", "VerifyReport", "prepare_data",
           "prepare_shards", "verify_data", "verify_shards"]

_LISTED = 20  # bad files named in an error message; the rest are counted


def verify_data(data: ImageFolderData, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                workers: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every file of ``data``; results for unchanged files come from ``cache_dir``."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if isinstance(data, S3ImageFolder):  # objects in a bucket: ranged reads, cached by ETag
        return verify_objects(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    start, report = time.perf_counter(), VerifyReport(data)
    cache = VerifyCache(cache_dir, data.root, deep=deep, max_pixels=max_pixels)
    results: dict[str, str | None] = {}
    todo: dict[str, os.stat_result] = {}
    for path in data.files:  # one stat per file: on a second run, usually all the work there is
        try:
            st = os.stat(path)
        except OSError as err:
            results[path] = os_reason(err)
            continue
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block for ever; a label list can name one
            results[path] = "not a regular file (a FIFO, socket, device or folder); remove it from the list"
            continue
        todo[path] = st
        hit, results[path] = cache.lookup(path, stat_key(st))
        if hit:
            report.cached += 1
            del todo[path]
    results.update(check_files(list(todo), deep=deep, max_pixels=max_pixels,
                               workers=workers or default_num_threads()))
    for path, st in todo.items():
        cache.store(path, stat_key(st), results[path])
    cache.save()
    report.checked, report.bad = len(todo), {p: r for p in data.files if (r := results[p]) is not None}
    _logger.info("verified %d files under %s (%s; %d checked, %d from cache) in %.2f s: %d bad", len(data),
                 data.root, "deep" if deep else "header pass", len(todo), report.cached,
                 time.perf_counter() - start, len(report.bad))
    return report


class BadFilesError(DatasetError):
    """Files DALI would fail on (``bad``: path -> reason); the message lists them and says the fix."""

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
    """Verify ``data`` before a graph is built; raise on bad files (``error``) or leave them out (``skip``,
    listing them with reasons in ``cache_dir``, else the temp folder). A skip that would leave a
    class without any file is refused, as an empty class folder is at scan time. Shards are checked
    as a whole (``prepare_shards``: each against its recorded checksum), so ``skip`` does not apply."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    if isinstance(data, WebDatasetShards):
        return prepare_shards(data, cache_dir=cache_dir, deep=deep, workers=workers)
    report = verify_data(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    if report.ok:
        return data
    clean = report.clean()
    emptied = _emptied_classes(data, clean)
    if on_bad_file == "error" or not len(clean) or emptied:
        raise BadFilesError(report, none_usable=not len(clean), emptied=emptied)
    where = write_bad_list(Path(cache_dir or tempfile.gettempdir()), data.root, report.bad)
    _logger.warning("skipping %d of %d files under %s that DALI cannot decode; list with reasons: %s",
                    len(report.bad), len(data), data.root, where)
    return clean


def _emptied_classes(data: ImageFolderData, clean: ImageFolderData) -> tuple[str, ...]:
    """The classes ``data`` has files of and ``clean`` has none of."""
    gone = set(data.labels) - set(clean.labels)
    return tuple(data.classes[label] for label in sorted(gone))
