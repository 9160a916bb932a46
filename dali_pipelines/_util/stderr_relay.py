"""The relay behind ``collapse_native_logs``: copies a pipe to stderr, collapsing per-sample native lines.

Runs as its own small process (``python -I -S stderr_relay.py LABEL``, standard library only) with
the pipe (a pseudo-terminal when stderr is a terminal) on stdin and the process's original stderr as
its own, so it keeps draining after the process that writes into it dies: nothing written before a
crash is lost.

Every line passes through unchanged, at once, except the known per-sample lines of the native
image libraries (nvImageCodec's log, libjpeg-turbo's warnings). Of those, the first of each kind
passes through and the rest are counted; when the pipe closes, one line per kind gives the count.
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
from collections.abc import Callable

# nvImageCodec's log lines: "[WARNING] [nvjpeg_cuda_decoder] ..." (ANSI colours removed first).
_NVIMGCODEC = re.compile(r"\[(?:ERROR|WARNING|INFO|DEBUG|TRACE)\] \[[\w.-]+\] .*")
# libjpeg-turbo's warnings (jerror.h), printed once per decoded image by DALI's CPU decoder
# (and by PIL); the image still decodes.
_LIBJPEG = re.compile(
    r"(?:Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters for sequential JPEG"
    r"|Inconsistent progression sequence|Unknown Adobe color transform"
    r"|Application transferred too many scanlines"
    r"|Warning: (?:thumbnail image size|unknown JFIF revision)).*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")  # "107 extraneous bytes before marker 0xd9" ~ "2 ... 0xd8"
_LINE_END = re.compile(rb"[\r\n]")
_PARTIAL_WAIT_S = 0.05  # a line without its end yet (a progress bar) goes out after this long


def native_kind(line: str) -> tuple[str, str] | None:
    """(kind, message) for a known per-sample native line; None for anything else."""
    plain = _ANSI.sub("", line).strip()
    found = _NVIMGCODEC.search(plain) or _LIBJPEG.match(plain)
    if found is None:
        return None
    message = found.group(0)
    return _NUMBERS.sub("#", message), message


class Relay:
    """Line splitting, passing through and counting; ``write`` is where bytes go out."""

    def __init__(self, write: Callable[[bytes], None], label: str = "") -> None:
        self._write = write
        self._prefix = f"[{label}] " if label else ""
        self._counts: dict[str, int] = {}
        self._first: dict[str, str] = {}

    def line(self, raw: bytes) -> None:
        """One line with its terminator (or a partial line that waited long enough)."""
        found = native_kind(raw.decode("utf-8", "replace"))
        if found is None:
            self._write(raw)
            return
        kind, message = found
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._counts[kind] == 1:
            self._first[kind] = message
            self._write(raw)

    def summary(self) -> None:
        """One line per kind of collapsed native line: how often it was written in all."""
        for kind, count in self._counts.items():
            if count > 1:
                self._write(f"{self._prefix}dali_pipelines: native log line written {count} times in all, "
                            f"shown once: {self._first[kind]}\n".encode())


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # stderr went away (closed terminal): keep draining so writers never block


def run(read_fd: int, write_fd: int, label: str) -> None:
    relay = Relay(lambda data: _write_all(write_fd, data), label)
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], _PARTIAL_WAIT_S if pending else None)
        if not ready:  # a partial line sat alone long enough: a progress bar, a prompt
            relay.line(pending)
            pending = b""
            continue
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:  # a pseudo-terminal's last writer closed it (Linux reports EIO, not EOF)
            chunk = b""
        if not chunk:
            break
        pending += chunk
        start = 0
        for end in _LINE_END.finditer(pending):
            relay.line(pending[start:end.end()])
            start = end.end()
        pending = pending[start:]
    if pending:
        relay.line(pending)
    relay.summary()


def main() -> None:
    # Ctrl-C and a job's SIGTERM reach the whole process group; the relay must outlive the
    # process it serves (its last words come through here) and ends when the pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run(sys.stdin.fileno(), sys.stderr.fileno(), sys.argv[1] if len(sys.argv) > 1 else "")


if __name__ == "__main__":
    main()
