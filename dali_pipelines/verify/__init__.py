"""Verify image files before a DALI graph is built: one bad file kills a DALI pipeline for good.

Two levels. The header pass (default) reads each file's header and tail only
(``dali_pipelines.verify.headers``). ``deep=True`` then decodes every file that passed with
DALI's own CPU decoder (``dali_pipelines.verify.decode``), so "accepted" means "DALI decoded it".
``prepare_data`` is what training and benchmarks call: verify (cached), then fail or skip.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData
from dali_pipelines.verify.cache import VerifyCache, root_tag, stat_key
from dali_pipelines.verify.decode import READ_ERROR, decode_one, deep_decode
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS, Header, check_header

_logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_PIXELS", "BadFilesError", "VerifyReport", "check_bytes", "check_file",
           "prepare_data", "verify_data"]

_LISTED = 20  # bad files named in an error message; the rest are counted


def check_file(path: str | os.PathLike[str], *, deep: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why DALI would fail on the image at ``path`` (a short reason), or None if it is fine."""
    header = _header_of_file(str(path), max_pixels)
    if header.reason is not None or not deep:
        return header.reason
    return deep_decode([str(path)], workers=None).get(str(path))


def check_bytes(data: bytes, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``check_file`` for an encoded image in memory (e.g. a tar shard member)."""
    header = check_header(io.BytesIO(data), len(data), max_pixels)
    if header.reason is not None or not deep:
        return header.reason
    return decode_one(np.frombuffer(data, dtype=np.uint8))


@dataclass
class VerifyReport:
    """Result of verifying a data set: bad files with reasons, and where the work went."""

    data: ImageFolderData
    bad: dict[str, str] = field(default_factory=dict)  # path -> reason, in data order
    checked: int = 0  # files read this time
    cached: int = 0  # files whose result came from the cache
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.bad

    def clean(self) -> ImageFolderData:
        """The data set without its bad files (labels and classes unchanged)."""
        return self.data.subset([i for i, f in enumerate(self.data.files) if f not in self.bad])


def verify_data(data: ImageFolderData, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                workers: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every file of ``data``; results for unchanged files come from ``cache_dir``."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    start = time.perf_counter()
    cache = VerifyCache.for_root(cache_dir, data.root) if cache_dir is not None else None
    report = VerifyReport(data)
    results: dict[str, str | None] = {}
    todo: list[tuple[str, tuple[int, int, int]]] = []
    for path in data.files:  # one stat per file: on a second run, usually all the work there is
        try:
            key = stat_key(os.stat(path))
        except OSError as err:
            results[path] = _os_reason(err)
            continue
        hit, reason = cache.lookup(path, key, deep=deep, max_pixels=max_pixels) if cache else (False, None)
        if hit:
            results[path] = reason
            report.cached += 1
        else:
            todo.append((path, key))
    results.update(_check_many([p for p, _ in todo], deep=deep, max_pixels=max_pixels,
                               workers=workers or default_num_threads()))
    report.checked = len(todo)
    if cache is not None:
        for path, key in todo:
            if not _is_os_reason(results[path]):  # I/O errors may pass; never cache them
                cache.store(path, key, deep=deep, max_pixels=max_pixels, reason=results[path])
        cache.save()
    report.bad = {p: r for p in data.files if (r := results[p]) is not None}
    report.seconds = time.perf_counter() - start
    _logger.info("verified %d files under %s (%s; %d checked, %d from cache) in %.2f s: %d bad",
                 len(data), data.root, "deep" if deep else "header pass", report.checked,
                 report.cached, report.seconds, len(report.bad))
    return report


def _check_many(paths: Sequence[str], *, deep: bool, max_pixels: int, workers: int) -> dict[str, str | None]:
    """Header pass on threads (it mostly waits on I/O), then a deep decode of the files that passed."""
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        headers = dict(zip(paths, pool.map(lambda p: _header_of_file(p, max_pixels), paths), strict=True))
    results: dict[str, str | None] = {p: h.reason for p, h in headers.items()}
    if deep:
        passed = [p for p, h in headers.items() if h.reason is None]
        pixels = {p: max(1, headers[p].width * headers[p].height) for p in passed}
        results.update(deep_decode(passed, workers=workers, pixels=pixels))
    return results


def _header_of_file(path: str, max_pixels: int) -> Header:
    """The header check of one file; read errors and malformed headers become reasons, never raise."""
    try:
        with open(path, "rb") as f:
            return check_header(f, os.fstat(f.fileno()).st_size, max_pixels)
    except OSError as err:
        return Header(_os_reason(err))
    except (struct.error, ValueError) as err:  # a header parse we did not guard; never kill the pool
        return Header(f"corrupt image header: {err}")


def _os_reason(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return f"{READ_ERROR}permission denied; make it readable (chmod a+r) or remove it"
    if isinstance(err, FileNotFoundError):
        return f"{READ_ERROR}file not found (a dangling symlink?); remove it from the data set"
    return f"{READ_ERROR}{err.strerror or err}"


def _is_os_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(READ_ERROR)


class BadFilesError(DatasetError):
    """Files DALI would fail on; ``bad`` maps each path to the reason."""

    def __init__(self, message: str, bad: dict[str, str]) -> None:
        super().__init__(message)
        self.bad = bad


def prepare_data(data: ImageFolderData, *, on_bad_file: Literal["error", "skip"] = "error",
                 cache_dir: str | os.PathLike[str] | None = None, deep: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
                 bad_list_dir: str | os.PathLike[str] | None = None) -> ImageFolderData:
    """Verify ``data`` before a graph is built; raise on bad files (``error``) or leave them out (``skip``).

    With ``skip`` the bad files and reasons are written to ``bad_list_dir`` (default: ``cache_dir``,
    else the temp folder) and the log says how many and where.
    """
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    report = verify_data(data, deep=deep, max_pixels=max_pixels, workers=workers, cache_dir=cache_dir)
    if report.ok:
        return data
    if on_bad_file == "error":
        raise BadFilesError(_bad_files_message(report), report.bad)
    clean = report.clean()
    if not len(clean):
        raise BadFilesError(_bad_files_message(report, none_usable=True), report.bad)
    where = write_bad_list(report, Path(bad_list_dir or cache_dir or tempfile.gettempdir()))
    _logger.warning("skipping %d of %d files under %s that DALI cannot decode; list with reasons: %s",
                    len(report.bad), len(data), data.root, where)
    return clean


def _bad_files_message(report: VerifyReport, *, none_usable: bool = False) -> str:
    """Bad files (the first ``_LISTED``) with reasons, then the fix."""
    root = report.data.root
    lines = [f"{len(report.bad)} of {len(report.data)} files under {root} would stop DALI:"]
    lines += [f"  {_relative(p, root)}: {r}" for p, r in list(report.bad.items())[:_LISTED]]
    if len(report.bad) > _LISTED:
        lines.append(f"  ... and {len(report.bad) - _LISTED} more")
    if none_usable:
        lines.append(f"No file under {root} is usable, so skipping bad files leaves nothing: re-encode "
                     "them or point at the right data.")
    else:
        lines.append(f"Fix: remove or re-encode these files (full list: python -m dali_pipelines verify "
                     f"{root}), or pass --on-bad-file skip to leave them out.")
    return "\n".join(lines)


def write_bad_list(report: VerifyReport, directory: Path) -> Path:
    """Write "<path><TAB><reason>" per bad file to ``directory``; returns the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    # Named like the verify cache (name + hash of the resolved root): two sets called "train" differ.
    path = directory / f"bad-files-{root_tag(report.data.root)}.tsv"
    path.write_text("".join(f"{p}\t{r}\n" for p, r in report.bad.items()), encoding="utf-8")
    return path


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
