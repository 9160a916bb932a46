"""Deep verification: decode files with DALI's own CPU decoder, one failure not stopping the rest.

DALI's dynamic mode runs ``fn.decoders.image`` (as the graphs call it) outside a pipeline, so
a file that fails raises a Python exception instead of killing a pipeline. Files are decoded
in bounded batches on DALI's thread pool; only a failing batch is retried file by file.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np

_logger = logging.getLogger(__name__)

# At most this many files or pixels per batch, bounding memory use.
_BATCH_FILES = 64
_BATCH_PIXELS = 64 * 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
READ_ERROR = "cannot read: "


def deep_decode(paths: Sequence[str], *, workers: int | None,
                pixels: dict[str, int] | None = None) -> dict[str, str]:
    """Decode ``paths`` with DALI's CPU decoder; path -> reason for each that fails.

    ``workers`` threads (None: DALI's default pool); ``pixels`` (path -> claimed size) bounds batches.
    """
    if not paths:
        return {}
    import nvidia.dali.experimental.dynamic as ndd  # heavy import, needed only for deep checks

    bad: dict[str, str] = {}
    context = ndd.EvalContext(num_threads=workers, device_id=None) if workers else None
    with context if context is not None else nullcontext():
        for batch in _batches(paths, pixels or {}):
            bad.update(_decode_batch(batch))
    return bad


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
    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali import types

    encoded: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for path in paths:
        try:
            encoded[path] = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            bad[path] = f"{READ_ERROR}{err.strerror or err}"
    try:
        with _native_stderr():  # DALI logs each failure on fd 2; the per-file pass reports them
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
    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali import types

    log: list[str] = []
    try:
        with _native_stderr(log):
            ndd.decoders.image(ndd.as_tensor(data), device="cpu", output_type=types.RGB)
        return None
    except RuntimeError as err:
        # The exception only says "Failed to decode sample"; the decoder's log line says why.
        lines = [_ANSI.sub("", line).strip() for line in "".join(log).splitlines() if line.strip()]
        detail = lines[-1] if lines else str(err).strip().splitlines()[0]
        return f"DALI's decoder failed: {detail}"


@contextmanager
def _native_stderr(sink: list[str] | None = None) -> Iterator[None]:
    """Capture what C++ code writes to file descriptor 2 (DALI's logger) into ``sink``.

    Process-wide while active: call it only from the thread doing the decoding.
    """
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            if sink is not None:
                sink.append(text)
            if text.strip():
                _logger.debug("DALI decoder log: %s", text.strip())

