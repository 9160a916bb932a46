"""A failed measurement's reason is one line with the fix for a known cause, and a run with one
says so in its summary and exits 1. The full /dev/shm of a container (Docker's 64 MB default) is
made for real: a 1 MiB tmpfs over /dev/shm in a private mount namespace, where a real DataLoader
job runs through the sweep's own job function."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import EXIT_FAILED, RESULTS_DIR, failed_status
from bench.failures import died_reason
from bench.queries import summary
from bench.records import Record, newest_run

# One torch-pil job of batch 8 (4.8 MB) through sweep._child, the function every job process runs.
JOB = """
import json, multiprocessing, sys
from bench.records import Settings
from bench.sweep import _child, plan_section
from dali_pipelines import scan_image_folder
settings = Settings(sections=("throughput",), backends=("torch-pil",), workloads=("train",), device="cpu",
                    batch_size=8, max_workers=1, warmup_s=0.0, repeat_s=0.0)
(job,) = plan_section(settings, "throughput")
receive, send = multiprocessing.Pipe(duplex=False)
_child(job, scan_image_folder(sys.argv[1]), send)
print(json.dumps(receive.recv().to_dict()))
"""


def _private_mounts() -> str | None:
    """Why a private mount namespace cannot be made here; None when it can."""
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           check=False)
    return None if probe.returncode == 0 else "needs root (or CAP_SYS_ADMIN) to mount a small /dev/shm"


@pytest.mark.skipif(_private_mounts() is not None, reason=str(_private_mounts()))
def test_a_full_dev_shm_fails_the_job_and_the_run_with_the_fix(val_root: Path, capsys) -> None:
    script = 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1" "$2"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sys.executable, JOB,
               str(val_root)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
                          env=os.environ, check=False)
    assert proc.returncode == 0, proc.stderr
    record = Record.from_dict(json.loads(proc.stdout.splitlines()[-1]))
    reason = record.reason
    assert record.status == "error" and "\n" not in reason
    assert reason.startswith("DataLoader worker process 0: RuntimeError: unable to allocate shared memory")
    assert "No space left on device" in reason and "--shm-size=8g" in reason and "/dev/shm (1 MiB" in reason
    assert "Original Traceback" in record.traceback  # the worker's whole story is kept

    _, committed = newest_run(RESULTS_DIR)
    run = dataclasses.replace(committed, results=[committed.results[0], record])
    assert failed_status(run) == EXIT_FAILED
    assert "bench: 1 of 2 measurements failed" in capsys.readouterr().err
    assert summary(run)["failed"] == [{"section": "throughput", "backend": "torch-pil", "workload": "train",
                                       "reason": reason}]
    assert failed_status(committed) == 0


def test_a_job_killed_by_sigbus_names_the_signal_and_the_fix() -> None:
    assert died_reason(-7).startswith("the job's process died (exit code -7: SIGBUS); /dev/shm (")
    assert died_reason(1) == "the job's process died (exit code 1)"
