"""Why a job failed, in one line a person can act on (the record's traceback keeps the rest).

A DataLoader worker's error arrives wrapped ("Caught RuntimeError in DataLoader worker process
0. Original Traceback ..."): the reason is the worker's own last line. Causes met in practice get
their fix appended: a /dev/shm too small for the DataLoader's batches (Docker's 64 MB default)
fails with "unable to allocate shared memory(shm) ... No space left on device", or kills a
worker with SIGBUS ("Bus error").
"""

from __future__ import annotations

import re
import shutil
import signal

SHM_DIR = "/dev/shm"  # where torch's shared-memory tensors live (shm_open)
MAX_CHARS = 400  # of a reason; the full text stays in the record's traceback
_WORKER = re.compile(r"Caught \w+ in (DataLoader worker process \d+)\.\s*Original Traceback")
_SHM_FULL = re.compile(r"unable to allocate shared memory|out of shared memory|Bus error|SIGBUS", re.I)


def shm_hint() -> str:
    """The fix for a full /dev/shm, with its size and free space here."""
    try:
        usage = shutil.disk_usage(SHM_DIR)
        where = f"{SHM_DIR} ({usage.total / 2**20:.0f} MiB, {usage.free / 2**20:.0f} MiB free)"
    except OSError:
        where = SHM_DIR
    return (f"{where} is too small for the DataLoader workers' batches: give it more room "
            "(docker run --shm-size=8g, or --ipc=host; see docs/benchmarks.md)")


def with_hint(reason: str) -> str:
    """``reason`` with the fix appended when it names a known cause."""
    return f"{reason}; {shm_hint()}" if _SHM_FULL.search(reason) else reason


def one_line(text: str) -> str:
    """``text``'s lines joined with spaces, cut to ``MAX_CHARS``."""
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= MAX_CHARS else joined[:MAX_CHARS - 3] + "..."


def failure_reason(err: BaseException) -> str:
    """One line for a job that raised ``err``: a DataLoader worker's own error unwrapped, plus
    the fix for a known cause."""
    message = str(err)
    worker = _WORKER.search(message)
    if worker:
        last = next((line.strip() for line in reversed(message.splitlines()) if line.strip()), "")
        return with_hint(one_line(f"{worker[1]}: {last}"))
    return with_hint(one_line(f"{type(err).__name__}: {message}"))


def died_reason(exit_code: int | None) -> str:
    """One line for a job whose process ended without sending its record."""
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return with_hint(f"the job's process died (exit code {exit_code}: {name})")
    return f"the job's process died (exit code {exit_code})"
