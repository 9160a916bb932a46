"""Measurements in fresh processes: RSS, threads and memory pools start clean.

TensorFlow, DALI and DataLoader workers in one process would share thread pools and heap
high-water marks (and forking after TensorFlow has started threads is unsafe), so jobs run in
``spawn``-ed children that import only what their backend needs. The full run gives every job
its own child; the quick run shares one child per backend to save the start-up (~4 s each).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench.jobs import Job, skip_reason

_logger = logging.getLogger(__name__)


def _child(jobs: Sequence[Job], data_root: str, conn: Connection) -> None:
    # Runs in the spawned process: import the heavy modules here, report one record per job.
    from bench.jobs import execute

    try:
        for job in jobs:
            try:
                conn.send(execute(job, data_root))
            except Exception as err:  # any failure becomes a result row, never a lost benchmark
                conn.send({**job.to_dict(), "status": "error", "reason": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc()})
    finally:
        conn.close()


def _failed(job: Job, reason: str) -> dict[str, Any]:
    _logger.warning("%s failed: %s", job.label(), reason)
    return {**job.to_dict(), "status": "error", "reason": reason}


def run_isolated(jobs: Sequence[Job], data_root: str, timeout_s: float) -> Iterator[dict[str, Any]]:
    """Run ``jobs`` in order in one spawned child; yields one record per job as it finishes.

    A job that cannot run here is reported as skipped without starting a process. A job that
    exceeds ``timeout_s`` or kills the child is reported as an error, as are the jobs after it.
    """
    runnable = []
    for job in jobs:
        reason = skip_reason(job)
        if reason:
            yield {**job.to_dict(), "status": "skipped", "reason": reason}
        else:
            runnable.append(job)
    if not runnable:
        return
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: daemonic processes may not start DataLoader workers of their own.
    proc = ctx.Process(target=_child, args=(runnable, data_root, child), name="bench-job")
    proc.start()
    child.close()
    try:
        for index, job in enumerate(runnable):
            try:
                if not parent.poll(timeout_s):
                    yield from (_failed(j, f"not run: {job.label()} timed out after {timeout_s:.0f} s")
                                for j in runnable[index:])
                    return
                yield parent.recv()
            except EOFError:
                yield from (_failed(j, f"worker process died (exit code {proc.exitcode})")
                            for j in runnable[index:])
                return
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
