"""SIGINT / SIGTERM during a run: the first asks for a graceful stop (finish the step, save,
exit 0), a second stops at once, saying in one line what it kept."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

_logger = logging.getLogger(__name__)


class StopRequest:
    """Set by SIGINT/SIGTERM; the training loop polls it between steps, saves, and exits 0."""

    def __init__(self, *, kept: Callable[[], str] | None = None) -> None:
        """``kept``: what a stop at once leaves (the last good checkpoint and its resume command),
        said on a second signal; None on ranks that do not speak for the run."""
        self.requested = False
        self.signal_name = ""
        self.kept = kept
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            # A second signal means "now": say what is kept, then the default behaviour (SIGTERM
            # ends the process, exit 143; SIGINT raises StoppedAtOnceError, exit 130). A signal handler
            # may interrupt a print, so the line goes straight to fd 2.
            self.uninstall()
            if self.kept is not None:
                name = signal.Signals(signum).name
                line = f"{name} again: stopped at once, without saving; {self.kept()}\n"
                os.write(2, line.encode("utf-8", "replace"))
            if signum == signal.SIGINT:
                raise StoppedAtOnceError
            signal.raise_signal(signum)
            return
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        _logger.warning("%s received: finishing this step, then saving a checkpoint", self.signal_name)


class StoppedBeforeTrainingError(RuntimeError):
    """A stop signal arrived during set-up: nothing was trained, changed or saved."""


class StoppedAtOnceError(KeyboardInterrupt):
    """A second SIGINT: stop now, without saving (the handler has said what is kept)."""
