"""Each measurement in a fresh process: RSS, threads and memory pools start clean every time.

TensorFlow, DALI and DataLoader workers in one process would share thread pools and heap
high-water marks (and forking after TensorFlow has started threads is unsafe), so every job
runs in a ``spawn``-ed child that imports only what its backend needs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any

from bench.jobs import Job

_logger = logging.getLogger(__name__)


def _child(job: Job, data_root: str, conn: Connection) -> None:
    # Runs in the spawned process: import the heavy modules here, report one record.
    try:
        from bench.jobs import execute

        conn.send(execute(job, data_root))
    except Exception as err:  # any failure becomes a result row, never a lost benchmark
        conn.send({**job.to_dict(), "status": "error", "reason": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()})
    finally:
        conn.close()


def run_isolated(job: Job, data_root: str, timeout_s: float) -> dict[str, Any]:
    """Run ``job`` in a spawned child; a record with status ok/skipped/error (also on timeout)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: daemonic processes may not start DataLoader workers of their own.
    proc = ctx.Process(target=_child, args=(job, data_root, child), name=f"bench-{job.backend}")
    proc.start()
    child.close()
    try:
        if parent.poll(timeout_s):
            record = parent.recv()
        else:
            record = {**job.to_dict(), "status": "error", "reason": f"timed out after {timeout_s:.0f} s"}
    except EOFError:
        record = {**job.to_dict(), "status": "error",
                  "reason": f"worker process died (exit code {proc.exitcode})"}
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if record["status"] == "error":
        _logger.warning("%s failed: %s", job.label(), record["reason"])
    return record
