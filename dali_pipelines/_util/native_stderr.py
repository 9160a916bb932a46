"""What C/C++ libraries write straight to file descriptor 2 (DALI, nvImageCodec, libjpeg, TensorFlow).

Python's ``logging`` never sees these writes. Two tools, both built on swapping fd 2:

- ``native_stderr()``: capture fd 2 into a temporary file for a block of code (a library's
  import banner, the reason a decoder gives for one file).
- ``collapse_native_logs()``: for the whole process, route fd 2 through a relay process that
  passes everything through except repeats of the native image libraries' per-sample lines,
  which it counts and reports once at exit (DALI's decoders can write one line per image).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_logger = logging.getLogger(__name__)

NATIVE_LOG_ENV = "DALI_PIPELINES_NATIVE_LOG"
_NATIVE_LOG_MODES = ("collapse", "raw")
_RELAY_SCRIPT = Path(__file__).with_name("stderr_relay.py")
_RELAY_EXIT_WAIT_S = 2.0  # at exit, time for the relay to print its summary before the shell prompt


@contextmanager
def native_stderr(sink: list[str] | None = None) -> Iterator[None]:
    """Redirect fd 2 to a temporary file while active; append its text to ``sink`` if given.

    Python logging never sees these writes, so they would otherwise interleave with tables
    and progress bars. Process-wide while active: use it from one thread at a time. What is
    captured is logged at DEBUG level. Works inside ``collapse_native_logs`` (fd 2 goes back
    to its relay afterwards).
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


class _Collapser:
    """fd 2 of this process -> pipe -> relay process -> the stderr fd 2 was before."""

    def __init__(self) -> None:
        _flush_python_stderr()
        read_end, write_end = _channel()
        try:
            # The relay inherits today's fd 2 as its stderr and owns the pipe's read end; it
            # needs only the standard library, so -I -S keeps its start-up to milliseconds.
            self._relay = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_RELAY_SCRIPT), _rank_label()],
                stdin=read_end, stdout=subprocess.DEVNULL, close_fds=True)
        except OSError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._original = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)  # fd 2 (and copies children inherit) is the only write end: the
        # relay sees end-of-file, prints its summary and exits when the last writer is gone.
        self._pipe = _identity(2)
        self._pid = os.getpid()
        atexit.register(self.close)

    def active(self) -> bool:
        """Whether fd 2 still is this relay's pipe (a test harness may have swapped it since)."""
        return _identity(2) == self._pipe

    def close(self, wait_s: float = _RELAY_EXIT_WAIT_S) -> None:
        """Give fd 2 back and let the relay finish; a forked child leaves its parent's relay alone."""
        if os.getpid() != self._pid or self._original < 0:
            return
        atexit.unregister(self.close)
        _flush_python_stderr()
        if self.active():
            os.dup2(self._original, 2)
        os.close(self._original)
        self._original = -1
        # Child processes may still hold the pipe; then the relay ends with the last of them.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._relay.wait(wait_s)


_lock = threading.Lock()
_installed: list[_Collapser] = []  # the current relay of this process, if any


def collapse_native_logs() -> bool:
    """Route this process's fd 2 through the relay that collapses per-sample native log lines.

    Idempotent and cheap after the first call; ``make_loader`` calls it. Each distinct native
    per-sample line (nvImageCodec's log, libjpeg's "Corrupt JPEG data ...") is shown the first
    time, then counted, and one line per kind gives the count at exit. Everything else (Python
    tracebacks, logging, progress bars, other libraries) passes through unchanged. The relay is
    a separate process so that what a crash writes last still arrives. Under ``torchrun`` each
    rank has its own relay and labels its summary with the rank. Set
    ``DALI_PIPELINES_NATIVE_LOG=raw`` to leave fd 2 alone. Returns whether the relay is active.
    """
    mode = os.environ.get(NATIVE_LOG_ENV, "collapse")
    if mode not in _NATIVE_LOG_MODES:
        raise ValueError(f"{NATIVE_LOG_ENV}={mode!r}: use one of {', '.join(_NATIVE_LOG_MODES)}")
    if mode == "raw":
        return False
    with _lock:
        if _installed and _installed[0].active():
            return True
        if _installed:  # fd 2 was replaced under it (a test harness): that relay has ended or will
            _installed.pop().close(wait_s=0.0)
        try:
            _installed.append(_Collapser())
        except OSError as err:
            _logger.warning("native log relay did not start (%s); native lines pass through as written", err)
            return False
        return True


def _channel() -> tuple[int, int]:
    """(read end, write end) that fd 2 will write into: a pseudo-terminal when stderr is a terminal.

    A plain pipe would make ``isatty()`` false for everything written to stderr afterwards, so
    progress bars would switch to their log-file form on an interactive terminal. The pty is
    raw (no newline translation: the real terminal does that) and takes the terminal's size.
    """
    if not os.isatty(2):
        return os.pipe()
    read_end, write_end = os.openpty()
    tty.setraw(write_end)
    with contextlib.suppress(OSError):  # the window size only guides progress-bar widths
        fcntl.ioctl(write_end, termios.TIOCSWINSZ, fcntl.ioctl(2, termios.TIOCGWINSZ, b"\0" * 8))
    return read_end, write_end


def _flush_python_stderr() -> None:
    """Python's own buffered writes go out before fd 2 changes (sys.stderr is None under pythonw)."""
    if sys.stderr is not None:
        sys.stderr.flush()


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _rank_label() -> str:
    """'rank N' under a multi-process launcher (torchrun sets RANK and WORLD_SIZE), else ''."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"rank {os.environ.get('RANK', '?')}" if world.isdigit() and int(world) > 1 else ""
