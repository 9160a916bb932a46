"""The decode pass: DALI's CPU decoder judges files. Its dynamic mode runs ``fn.decoders.image`` (as
the graphs call it) outside a pipeline, so a failure raises instead of killing a pipeline. Files are
decoded in batches on DALI's threads; only a failing batch is decoded again file by file."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from dali_pipelines._util.native_stderr import native_stderr
from dali_pipelines.verify.headers import non_regular, os_reason

_logger = logging.getLogger(__name__)

_BATCH_FILES, _BATCH_PIXELS = 64, 64 * 1024 * 1024  # per batch at most: bounds memory use
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_local(path: str) -> np.ndarray:
    """A local file's bytes, as the decoder takes them; opened without blocking, and an OSError unless
    it is a regular file (a FIFO put in its place after the header pass must not hang the pass)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, non_regular(mode))
        return np.frombuffer(f.read(), dtype=np.uint8)


def deep_decode(paths: Sequence[str], *, workers: int, pixels: dict[str, int],
                read: Callable[[str], np.ndarray] = read_local) -> dict[str, str]:
    """Decode ``paths`` (``pixels``: the size each header claims) on ``workers`` threads; path -> reason.
    ``read`` fetches a file's bytes (an OSError is a read error): local files, or objects in a bucket."""
    import nvidia.dali.experimental.dynamic as ndd  # heavy: imported only when something is decoded

    bad: dict[str, str] = {}
    done = 0
    # device_id=None: only the CPU decoder runs, whether or not there is a GPU.
    with ndd.EvalContext(num_threads=workers, device_id=None):
        for number, batch in enumerate(_batches(paths, pixels), start=1):
            encoded: dict[str, np.ndarray] = {}
            for path in batch:
                try:
                    encoded[path] = read(path)
                except OSError as err:
                    bad[path] = os_reason(err)
            if encoded and _decode(list(encoded.values())) is not None:
                bad |= {path: reason for path, data in encoded.items() if (reason := _decode([data]))}
            done += len(batch)
            if number % 100 == 0:
                _logger.info("decoded %d of %d files, %d bad so far", done, len(paths), len(bad))
    return bad


def decode_bytes(encoded: dict[str, bytes], *, workers: int) -> dict[str, str]:
    """Decode in-memory images (name -> bytes, at most one batch's worth) on ``workers`` threads;
    name -> reason for each that DALI's CPU decoder refuses."""
    import nvidia.dali.experimental.dynamic as ndd

    arrays = {name: np.frombuffer(data, dtype=np.uint8) for name, data in encoded.items()}
    with ndd.EvalContext(num_threads=workers, device_id=None):
        if not arrays or _decode(list(arrays.values())) is None:
            return {}
        return {name: reason for name, array in arrays.items() if (reason := _decode([array]))}


def _batches(paths: Sequence[str], pixels: dict[str, int]) -> Iterator[list[str]]:
    batch: list[str] = []
    total = 0
    for path in paths:
        if batch and (len(batch) == _BATCH_FILES or total + pixels[path] > _BATCH_PIXELS):
            yield batch
            batch, total = [], 0
        batch.append(path)
        total += pixels[path]
    yield batch


def _decode(encoded: list[np.ndarray]) -> str | None:
    """Decode a batch as the graphs do; DALI's reason when it fails (the last one logged), else None."""
    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali import types

    log: list[str] = []
    try:
        with native_stderr(log):  # DALI logs why on fd 2; the exception only says "Failed to decode"
            ndd.decoders.image(ndd.as_batch(encoded), device="cpu", output_type=types.RGB)
        return None
    except RuntimeError as err:
        lines = [_ANSI.sub("", line).strip() for line in "".join(log).splitlines() if line.strip()]
        return f"DALI's decoder failed: {lines[-1] if lines else str(err).strip() or type(err).__name__}"
