"""The checks themselves, on threads: the header pass, then DALI's decoder for what the headers
cannot vouch for (or every file, deep). The files may be local (the defaults) or objects in a bucket."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from dali_pipelines.verify.decode import deep_decode, read_local
from dali_pipelines.verify.headers import Header, check_path

_logger = logging.getLogger(__name__)


def check_files(paths: list[str], *, deep: bool, max_pixels: int, workers: int,
                check: Callable[[str, int], Header] = check_path,
                read: Callable[[str], np.ndarray] = read_local,
                pool: Executor | None = None) -> dict[str, str | None]:
    """Header pass on threads (mostly waiting on I/O); DALI decodes what the headers cannot vouch for.
    ``check`` and ``read`` reach the files (local ones by default); ``pool`` runs the header reads
    (a pool of ``workers`` threads for this call by default: a caller going chunk by chunk passes
    one pool for every chunk)."""
    if pool is None:
        with ThreadPoolExecutor(max_workers=workers) as own:
            return check_files(paths, deep=deep, max_pixels=max_pixels, workers=workers, check=check,
                               read=read, pool=own)
    headers = dict(zip(paths, pool.map(lambda p: check(p, max_pixels), paths), strict=True))
    results: dict[str, str | None] = {p: h.reason for p, h in headers.items()}
    decode = [p for p, h in headers.items() if h.reason is None and (deep or h.needs_decode)]
    if decode:
        _logger.info("%d of %d files go on to DALI's decoder%s", len(decode), len(paths),
                     "" if deep else ": their headers cannot show that DALI decodes them")
        results.update(deep_decode(decode, workers=workers, pixels={p: headers[p].pixels for p in decode},
                                   read=read))
    return results
