"""Resource accounting for one measurement: CPU seconds, peak PSS and GPU memory, incl. children."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import psutil
import torch

_logger = logging.getLogger(__name__)
_MIB = 1024 * 1024


def _live_children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def cpu_seconds(proc: psutil.Process | None = None) -> float:
    """User + system CPU seconds of this process, its reaped children and its live children.

    DataLoader workers are live children: ``children_user`` only counts children already
    waited for, so live ones are summed one by one (never both: a child moves from the
    live sum to ``children_*`` when reaped).
    """
    proc = proc or psutil.Process()
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in _live_children(proc):
        try:
            ctimes = child.cpu_times()
        except psutil.Error:  # exited between listing and reading
            continue
        total += ctimes.user + ctimes.system
    return total


def rss_bytes(proc: psutil.Process | None = None) -> int:
    """Resident set size of this process plus all live children (workers count)."""
    proc = proc or psutil.Process()
    total = proc.memory_info().rss
    for child in _live_children(proc):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


def _pss_or_rss(proc: psutil.Process) -> tuple[int, bool]:
    """(bytes, is_pss) of one process: PSS where the OS reports it, else RSS."""
    try:
        return proc.memory_full_info().pss, True
    except (AttributeError, psutil.AccessDenied):  # no ``pss`` field off Linux, or smaps unreadable
        return proc.memory_info().rss, False


def pss_bytes(proc: psutil.Process | None = None) -> tuple[int, bool]:
    """(proportional set size of this process plus live children, True if every reading was PSS).

    PSS splits each shared page among the processes mapping it, so forked DataLoader
    workers' copy-on-write pages are counted once, not once per worker as RSS would.
    Falls back to RSS (second item False) where PSS is unavailable.
    """
    proc = proc or psutil.Process()
    total, all_pss = _pss_or_rss(proc)
    for child in _live_children(proc):
        try:
            size, is_pss = _pss_or_rss(child)
        except psutil.Error:  # exited between listing and reading
            continue
        total += size
        all_pss = all_pss and is_pss
    return total, all_pss


def gpu_used_bytes() -> int | None:
    """Device-wide used GPU memory (all allocators: torch, DALI, nvJPEG); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total - free


class PeakMonitor:
    """Samples PSS (RSS where PSS is unavailable) and GPU memory in a thread while the ``with`` block runs.

    Reading PSS makes the kernel walk the page tables: ~2.5 ms per torch-sized process
    (measured), so a 250 ms period costs ~1% of a core per process, charged to this
    process's CPU time. A peak shorter than the period can be missed, so the final
    reading is taken on exit as well.
    """

    def __init__(self, period_s: float = 0.25, *, gpu: bool = False) -> None:
        self.period_s = period_s
        self.gpu = gpu and torch.cuda.is_available()
        self.peak_pss = 0
        self.pss_exact = True  # False once any sample fell back to RSS
        self.peak_gpu: int | None = None
        self._gpu_baseline = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-peak-monitor", daemon=True)

    def _sample(self) -> None:
        size, is_pss = pss_bytes()
        self.peak_pss = max(self.peak_pss, size)
        if not is_pss and self.pss_exact:
            self.pss_exact = False
            _logger.warning("PSS unavailable on this system; peak memory falls back to RSS, "
                            "which counts pages shared with forked workers once per worker")
        if self.gpu:
            used = gpu_used_bytes() or 0
            self.peak_gpu = max(self.peak_gpu or 0, used - self._gpu_baseline)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> PeakMonitor:
        if self.gpu:
            self._gpu_baseline = gpu_used_bytes() or 0
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def memory_metric(self) -> str:
        """``"pss"``, or ``"rss"`` where PSS was unavailable for any sample."""
        return "pss" if self.pss_exact else "rss"

    @property
    def peak_pss_mb(self) -> float:
        """Highest sampled PSS (process + children) in MiB; RSS where ``pss_exact`` is False."""
        return self.peak_pss / _MIB

    @property
    def peak_gpu_mb(self) -> float | None:
        """Highest device memory in use above the level before the block, in MiB (None: no GPU)."""
        return None if self.peak_gpu is None else self.peak_gpu / _MIB
