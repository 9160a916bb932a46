"""Capture what C/C++ libraries write straight to file descriptor 2 (DALI, TensorFlow/absl)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_logger = logging.getLogger(__name__)


@contextmanager
def native_stderr(sink: list[str] | None = None) -> Iterator[None]:
    """Redirect fd 2 to a temporary file while active; append its text to ``sink`` if given.

    Python logging never sees these writes, so they would otherwise interleave with tables
    and progress bars. Process-wide while active: use it from one thread at a time. What is
    captured is logged at DEBUG level.
    """
    sys.stderr.flush()  # Python's own buffered writes go out before the switch
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
                _logger.debug("native library output on stderr: %s", text.strip())
