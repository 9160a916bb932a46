"""A command whose reader went away (``python -m bench report | head``) ends quietly.

Python ignores SIGPIPE, so writing to a pipe nobody reads raises BrokenPipeError wherever the
next write happens (often the final flush at exit, where it prints "Exception ignored ...").
Every command-line entry point is wrapped in ``quiet_broken_pipe``.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")
# What a shell reports for a program ended by SIGPIPE (as `cat` is in `cat big | head`).
EXIT_BROKEN_PIPE = 128 + int(signal.SIGPIPE)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end is closed: poll reports POLLERR."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor, or no poll() here
        return False


def _drop_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so the flush at interpreter exit has
    somewhere to go and prints no second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def quiet_broken_pipe(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap a ``main`` returning an exit code: a closed stdout ends it with status 141 and no
    traceback; stdout is flushed inside, so a broken pipe at the last write is caught too. A
    BrokenPipeError from anything else (a socket the command itself opened) is not hidden."""
    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            try:
                code = main(*args, **kwargs)
            except SystemExit as done:  # argparse's --help and errors: flush what they printed
                sys.stdout.flush()
                # argparse swallows the OSError of a write that went past the buffer (a --help
                # longer than 8 KiB), so nothing is left to fail at the flush: ask the pipe.
                if done.code in (0, None) and _stdout_reader_gone():
                    _drop_stdout()
                    return EXIT_BROKEN_PIPE
                raise
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            if not _stdout_reader_gone():
                raise
            _drop_stdout()
            return EXIT_BROKEN_PIPE
    return wrapper
