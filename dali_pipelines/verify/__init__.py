"""Verify image files before a DALI graph is built: one bad file kills a DALI pipeline for good.

A header pass (``headers``) reads each file's header and tail; DALI's own decoder (``decode``) then
judges what a header cannot vouch for, or with ``deep=True`` every file. ``prepare_data`` is what
training and benchmarks call: verify (cached), then fail or skip."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.verify.cache import VerifyCache, write_bad_list
from dali_pipelines.verify.decode import deep_decode
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS, check_path, os_reason

_logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_PIXELS", "BadFilesError", "VerifyReport", "prepare_data", "verify_data"]

_LISTED = 20  # bad files named in an error message; the rest are counted


@dataclass
class VerifyReport:
    """Result of verifying a data set: bad files with reasons, and where the work went."""

    data: ImageFolderData
    bad: dict[str, str] = field(default_factory=dict)  # path -> reason, in data order
    checked: int = 0  # files read this time
    cached: int = 0  # files whose result came from the cache

    @property
    def ok(self) -> bool:
        return not self.bad

    def clean(self) -> ImageFolderData:
        """The data set without its bad files (labels and classes unchanged)."""
        return self.data.subset([i for i, f in enumerate(self.data.files) if f not in self.bad])

    def named_bad(self) -> list[tuple[str, str]]:
        """(name, reason) per bad file; a name is relative to the data root when the file lies under it."""
        prefix = os.path.join(str(self.data.root), "")
        return [(p.removeprefix(prefix), r) for p, r in self.bad.items()]


def verify_data(data: ImageFolderData, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                workers: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every file of ``data``; results for unchanged files come from ``cache_dir``."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
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
        hit, results[path] = cache.lookup(path, todo[path])
        if hit:
            report.cached += 1
            del todo[path]
    results.update(_check_many(list(todo), deep=deep, max_pixels=max_pixels,
                               workers=workers or default_num_threads()))
    for path, st in todo.items():
        cache.store(path, st, results[path])
    cache.save()
    report.checked, report.bad = len(todo), {p: r for p in data.files if (r := results[p]) is not None}
    _logger.info("verified %d files under %s (%s; %d checked, %d from cache) in %.2f s: %d bad", len(data),
                 data.root, "deep" if deep else "header pass", len(todo), report.cached,
                 time.perf_counter() - start, len(report.bad))
    return report


def _check_many(paths: list[str], *, deep: bool, max_pixels: int, workers: int) -> dict[str, str | None]:
    """Header pass on threads (mostly waiting on I/O); DALI decodes what the headers cannot vouch for."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = dict(zip(paths, pool.map(lambda p: check_path(p, max_pixels), paths), strict=True))
    results: dict[str, str | None] = {p: h.reason for p, h in headers.items()}
    decode = [p for p, h in headers.items() if h.reason is None and (deep or h.needs_decode)]
    if decode:
        _logger.info("%d of %d files go on to DALI's decoder%s", len(decode), len(paths),
                     "" if deep else ": their headers cannot show that DALI decodes them")
        results.update(deep_decode(decode, workers=workers, pixels={p: headers[p].pixels for p in decode}))
    return results


class BadFilesError(DatasetError):
    """Files DALI would fail on (``bad``: path -> reason); the message lists them and says the fix."""

    def __init__(self, report: VerifyReport, *, none_usable: bool = False) -> None:
        root, more = report.data.root, len(report.bad) - _LISTED
        lines = [f"{len(report.bad)} of {len(report.data)} files under {root} would stop DALI:"]
        lines += [f"  {name}: {reason}" for name, reason in report.named_bad()[:_LISTED]]
        lines += [f"  ... and {more} more"] if more > 0 else []
        if none_usable:
            lines.append(f"No file under {root} is usable, so skipping bad files leaves nothing: re-encode "
                         "them or point at the right data.")
        else:
            lines.append(f"Fix: remove or re-encode these files (full list: python -m dali_pipelines verify "
                         f"{root}), or pass --on-bad-file skip to leave them out.")
        super().__init__("\n".join(lines))
        self.bad = report.bad


def prepare_data(data: ImageFolderData, *, on_bad_file: Literal["error", "skip"] = "error",
                 cache_dir: str | os.PathLike[str] | None = None, deep: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None) -> ImageFolderData:
    """Verify ``data`` before a graph is built; raise on bad files (``error``) or leave them out (``skip``,
    listing them with reasons in ``cache_dir``, else the temp folder)."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    report = verify_data(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    if report.ok:
        return data
    clean = report.clean()
    if on_bad_file == "error" or not len(clean):
        raise BadFilesError(report, none_usable=not len(clean))
    where = write_bad_list(Path(cache_dir or tempfile.gettempdir()), data.root, report.bad)
    _logger.warning("skipping %d of %d files under %s that DALI cannot decode; list with reasons: %s",
                    len(report.bad), len(data), data.root, where)
    return clean
