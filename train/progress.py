"""The progress display of a training epoch: a tqdm bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from tqdm import tqdm

PROGRESS_LINE_SECONDS = 10.0  # at most one plain progress line this often when stderr is not a terminal


class ProgressDisplay:
    """A tqdm bar on a terminal. Elsewhere (a log file, a pipe) plain lines at log steps, at most
    one per ``PROGRESS_LINE_SECONDS``: a redrawn bar is hundreds of carriage returns in a file."""

    def __init__(self, *, total: int, done: int, desc: str, enabled: bool,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.done, self.desc = enabled, total, done, desc
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            self._bar = tqdm(total=total, initial=done, desc=desc, file=self.stream, unit="step",
                             dynamic_ncols=True, leave=False)
        self._last_line = -math.inf

    def update(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def report(self, *, loss: float, images_per_s: float) -> None:
        """Called at log steps: the bar's postfix, or a plain line when one is due."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{images_per_s:.0f}")
            return
        now = time.monotonic()
        if self.enabled and now - self._last_line >= PROGRESS_LINE_SECONDS:
            self._last_line = now
            percent = 100 * self.done / max(self.total, 1)
            print(f"{self.desc}: step {self.done}/{self.total} ({percent:.0f}%), loss {loss:.4f}, "
                  f"{images_per_s:.0f} img/s", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
