"""SIGINT / SIGTERM during a run: the first asks for a graceful stop (finish the step, save,
exit 0), a second stops at once."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

_logger = logging.getLogger(__name__)


class StopRequest:
    """Set by SIGINT/SIGTERM; the training loop polls it between steps, saves, and exits 0."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
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
            # A second signal means "now": fall back to the default behaviour.
            self.uninstall()
            signal.raise_signal(signum)
            return
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        _logger.warning("%s received: finishing this step, then saving a checkpoint", self.signal_name)


class StoppedBeforeTrainingError(RuntimeError):
    """A stop signal arrived during set-up: nothing was trained, changed or saved."""
