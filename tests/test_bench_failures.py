"""A benchmark with a failed measurement says so and exits 1; a failure's reason is one line with
the fix for a known cause. The full /dev/shm of a container (Docker's 64 MB default) is made
for real: a 1 MiB tmpfs over /dev/shm in a mount namespace of the run's own."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.failures import died_reason
from bench.queries import summary
from bench.records import newest_run


def _private_mounts() -> str | None:
    """Why a private mount namespace cannot be made here; None when it can."""
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           check=False)
    return None if probe.returncode == 0 else "needs root (or CAP_SYS_ADMIN) to mount a small /dev/shm"


@pytest.mark.skipif(_private_mounts() is not None, reason=str(_private_mounts()))
def test_a_full_dev_shm_fails_the_run_and_the_reason_gives_the_fix(val_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    bench = [sys.executable, "-m", "bench", "--data", str(val_root), "--out", str(out), "--backends",
             "torch-pil", "--sections", "throughput", "--workloads", "train", "--batch-size", "8",
             "--max-workers", "1", "--warmup-s", "0", "--repeat-s", "0"]
    script = f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {shlex.join(bench)}"
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
                          env=os.environ, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "1 of 1 measurements failed" in proc.stderr
    path, run = newest_run(out)
    (failed,) = summary(run, path)["failed"]
    reason = failed["reason"]
    assert failed["backend"] == "torch-pil" and "\n" not in reason
    assert reason.startswith("DataLoader worker process 0: RuntimeError: unable to allocate shared memory")
    assert "No space left on device" in reason and "--shm-size=8g" in reason and "/dev/shm (1 MiB" in reason
    assert "Original Traceback" in run.results[0].traceback  # the worker's whole story is kept


def test_a_job_killed_by_sigbus_names_the_signal_and_the_fix() -> None:
    assert died_reason(-7).startswith("the job's process died (exit code -7: SIGBUS); /dev/shm (")
    assert died_reason(1) == "the job's process died (exit code 1)"
