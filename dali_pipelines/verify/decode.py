"""Deep verification: decode files with DALI's own CPU decoder, one failure not stopping the rest.

DALI's dynamic mode runs ``fn.decoders.image`` (as the graphs call it) outside a pipeline, so
a file that fails raises a Python exception instead of killing a pipeline. Files are decoded
in bounded batches on DALI's thread pool; only a failing batch is retried file by file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from dali_pipelines._util.native_stderr import native_stderr

_logger = logging.getLogger(__name__)

# At most this many files or pixels per batch, bounding memory use.
_BATCH_FILES = 64
_BATCH_PIXELS = 64 * 1024 * 1024
_PROGRESS_EVERY = 100  # batches between progress log lines
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
READ_ERROR = "cannot read: "


class DynamicModeMissingError(RuntimeError):
    """This DALI lacks dynamic mode, which deep verification needs."""


def deep_decode(paths: Sequence[str], *, workers: int | None,
                pixels: dict[str, int] | None = None) -> dict[str, str]:
    """Decode ``paths`` with DALI's CPU decoder; path -> reason for each that fails.

    ``workers`` threads (None: DALI's default pool); ``pixels`` (path -> claimed size) bounds batches.
    """
    if not paths:
        return {}
    ndd = _dynamic_mode()
    bad: dict[str, str] = {}
    # device_id=None sets no device explicitly; dynamic mode still uses the current CUDA device
    # when there is one. Only the CPU decoder runs here either way.
    with ndd.EvalContext(num_threads=workers, device_id=None) if workers else nullcontext():
        done = 0
        for number, batch in enumerate(_batches(paths, pixels or {}), start=1):
            bad.update(_decode_batch(batch))
            done += len(batch)
            if number % _PROGRESS_EVERY == 0:
                _logger.info("deep decode: %d of %d files, %d bad so far", done, len(paths), len(bad))
    return bad


def _dynamic_mode() -> Any:
    """DALI's dynamic mode (imported late: heavy, and needed only for deep checks)."""
    try:
        import nvidia.dali.experimental.dynamic as ndd
    except ImportError as err:
        import nvidia.dali

        raise DynamicModeMissingError(
            f"deep verification needs DALI's dynamic mode (nvidia.dali.experimental.dynamic), which "
            f"DALI {nvidia.dali.__version__} lacks; install nvidia-dali-cuda120 2.4 or verify without "
            "--deep") from err
    return ndd


def _batches(paths: Sequence[str], pixels: dict[str, int]) -> Iterator[list[str]]:
    batch: list[str] = []
    total = 0
    for path in paths:
        if batch and (len(batch) == _BATCH_FILES or total + pixels.get(path, 1) > _BATCH_PIXELS):
            yield batch
            batch, total = [], 0
        batch.append(path)
        total += pixels.get(path, 1)
    if batch:
        yield batch


def _decode_batch(paths: list[str]) -> dict[str, str]:
    """Decode a batch at once; only when that fails, decode file by file to name the culprits."""
    from nvidia.dali import types

    ndd = _dynamic_mode()

    encoded: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for path in paths:
        try:
            encoded[path] = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            bad[path] = f"{READ_ERROR}{err.strerror or err}"
    if not encoded:
        return bad
    try:
        with native_stderr():  # DALI logs each failure on fd 2; the per-file pass reports them
            ndd.decoders.image(ndd.as_batch(list(encoded.values())), device="cpu", output_type=types.RGB)
        return bad
    except RuntimeError:
        pass
    for path, data in encoded.items():
        reason = decode_one(data)
        if reason is not None:
            bad[path] = reason
    return bad


def decode_one(data: np.ndarray) -> str | None:
    """DALI's reason for failing to decode one encoded image, or None when it decodes."""
    from nvidia.dali import types

    ndd = _dynamic_mode()

    log: list[str] = []
    try:
        with native_stderr(log):
            ndd.decoders.image(ndd.as_tensor(data), device="cpu", output_type=types.RGB)
        return None
    except RuntimeError as err:
        # The exception only says "Failed to decode sample"; the decoder's log line says why.
        lines = [_ANSI.sub("", line).strip() for line in "".join(log).splitlines() if line.strip()]
        detail = lines[-1] if lines else (str(err).strip() or type(err).__name__)
        return f"DALI's decoder failed: {detail}"


