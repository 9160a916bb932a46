"""Running the check's steps in order, each inside its share of the budget, each result kept.

The clock starts when the interpreter started. Before each step, the time left (less the last
bundle's) is shared among the steps still to run in proportion to their estimates: a step that
overruns takes time from none but itself. A bench job that would end past its step's share is
not started (counted as not run); pytest and the training run are ended at theirs. A step that
fails is recorded and the next one runs.
"""

from __future__ import annotations

import csv
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from bench.check.plan import FINAL_S, Plan, Planned, job_estimate
from bench.records import Record, Run
from bench.sweep import Job, Progress, run_or_skip
from dali_pipelines import ImageFolderData

StepStatus = Literal["ok", "failed", "cut", "skipped"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # tests/ lives here in a checkout
STOP_GRACE_S = 5.0  # after SIGTERM, before SIGKILL, for a step's process group
_OUTCOMES = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")


class Interrupted(BaseException):  # like KeyboardInterrupt: no `except Exception` may swallow it
    """SIGTERM arrived: the check stops, and writes what it has."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted


def stop_on_sigterm() -> None:
    """Turn SIGTERM (a time limit's kill) into ``Interrupted`` so the outputs are written first."""
    signal.signal(signal.SIGTERM, _on_sigterm)


@dataclass
class StepResult:
    """What one step did."""

    name: str
    status: StepStatus
    reason: str = ""  # why it failed, was cut or skipped
    seconds: float = 0.0
    estimate_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The step's entry in check.json."""
        return {"name": self.name, "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 1), "estimate_s": round(self.estimate_s, 1),
                "details": self.details}


class Clock:
    """Seconds since the command started, against the budget: since the process started
    (interpreter start-up included) when the process is the command, else since now."""

    def __init__(self, budget_s: float, *, since_process_start: bool = True) -> None:
        self.budget_s = budget_s
        self.start = psutil.Process().create_time() if since_process_start else time.time()

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return time.time() - self.start

    def left(self) -> float:
        """Seconds before the budget ends, less the last bundle's."""
        return self.budget_s - self.elapsed() - FINAL_S

    def share(self, plan: Plan, planned: Planned) -> float:
        """``planned``'s share of the time left: in proportion to its estimate among the steps
        from it on (their overlap counted as in ``Plan.total_s``)."""
        later = plan.steps[plan.steps.index(planned):]
        rest = Plan(plan.setup, plan.level, plan.settings, [p for p in later if p.runs]).total_s()
        return max(0.0, self.left()) * (planned.estimate_s / rest if rest > 0 else 1.0)


# ---------------------------------------------------------------- processes (pytest, train)

def _stop(proc: subprocess.Popen) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def start_process(command: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """``command`` in its own process group, stdout and stderr into ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_process(proc: subprocess.Popen, seconds: float) -> int | None:
    """Its exit status within ``seconds``; None (and the group ended, the grace period included
    in ``seconds``) when it ran past them."""
    try:
        return proc.wait(timeout=max(0.0, seconds - STOP_GRACE_S))
    except subprocess.TimeoutExpired:
        _stop(proc)
        return None
    except BaseException:  # Interrupted or Ctrl-C: never leave it running
        _stop(proc)
        raise


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ("" if none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


# ---------------------------------------------------------------- tests

def pytest_command(log_dir: Path) -> list[str]:
    """``pytest -m gpu`` over the project's tests, one line per test (kept if the run is cut)."""
    return [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfE", "--tb=short", "-p", "no:cacheprovider",
            "--basetemp", str(log_dir / "pytest-tmp"), str(PROJECT_ROOT / "tests")]


def pytest_outcome(log: Path) -> dict[str, Any]:
    """Counts per outcome and the failed tests' ids, from ``pytest -v``'s lines in ``log``."""
    counts = dict.fromkeys((o.lower() for o in _OUTCOMES), 0)
    failures = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        head, _, rest = line.partition(" ")
        outcome = rest.split(" ", 1)[0]
        if "::" in head and outcome in _OUTCOMES:
            counts[outcome.lower()] += 1
            if outcome in ("FAILED", "ERROR"):
                failures.append(head)
    return {**counts, "failures": failures, "summary": last_line(log)}


def finish_tests(proc: subprocess.Popen, log: Path, seconds: float, result: StepResult) -> None:
    """Wait for the tests (at most ``seconds``) and record their outcome in ``result``."""
    code = wait_process(proc, seconds)
    result.details = pytest_outcome(log)
    bad = result.details["failed"] + result.details["error"]
    if code is None:
        result.status, result.reason = "cut", f"ended at its bound; {bad} failed before that"
    elif bad or code not in (0, 5):  # 5: no test collected
        result.status, result.reason = "failed", result.details["summary"]
    else:
        result.status = "ok"


# ---------------------------------------------------------------- bench jobs

BUDGET = "the check's --budget"


def job_limit(job: Job, seconds_left: float) -> tuple[float, str]:
    """(seconds before ``job`` is abandoned, what set them): well past its estimate, a hang; or
    the time the budget has left, a cut."""
    hang = 3 * job_estimate(job) + 30.0
    if hang <= seconds_left:
        return hang, "a hang: 3x its estimate + 30 s"
    return max(1.0, seconds_left), BUDGET


def run_bench(planned: Planned, data: ImageFolderData, *, save: Callable[[Record], None], seconds: float,
              seconds_left: Callable[[], float], log: Any) -> StepResult:
    """Every job of a bench step, in order, while its share lasts; each record saved at once. A
    job the budget's end cut short is counted as not run, not saved as a failed measurement."""
    result = StepResult(planned.step.name, "ok", estimate_s=planned.estimate_s)
    end = time.monotonic() + seconds
    progress = Progress(len(planned.jobs), stream=log)
    counts = {"ok": 0, "error": 0, "skipped": 0, "not_run": 0}
    for job in planned.jobs:
        if time.monotonic() + job_estimate(job) > end:
            counts["not_run"] += 1
            continue
        limit_s, limit = job_limit(job, seconds_left())
        record = run_or_skip(job, {"files": data}, limit_s, limit)
        progress(job, record)
        if record.status == "error" and limit == BUDGET and record.reason.startswith("timed out"):
            counts["not_run"] += 1
            continue
        save(record)
        counts[record.status] += 1
    result.details = {"jobs": len(planned.jobs), **counts, "left_out": planned.left_out}
    if counts["error"]:
        result.status, result.reason = "failed", f"{counts['error']} of {len(planned.jobs)} jobs failed"
    elif counts["not_run"]:
        result.status = "cut"
        result.reason = (f"{counts['not_run']} of {len(planned.jobs)} jobs not run: its share of the budget "
                         "was spent")
    return result


# ---------------------------------------------------------------- training

def train_command(root: Path, out: Path, options: dict[str, Any]) -> list[str]:
    """``python -m train`` on the GPU for the planned steps, records into ``out``."""
    return [sys.executable, "-m", "train", "--data", str(root), "--device", "gpu", "--out", str(out),
            "--overwrite", "--batch-size", str(options["batch_size"]), "--epochs", str(options["epochs"]),
            "--max-steps", str(options["max_steps"]), "--log-every", "5"]


def train_figures(run_dir: Path, synthetic_images_per_s: float | None) -> dict[str, Any]:
    """The run's epoch rows, and its steady figures: the median over the epochs after the first
    (which holds the start-up; the first alone when it is the only one), against the e2e step's
    img/s on synthetic data of the same run."""
    with open(run_dir / "epochs.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {"epochs": []}
    steady = rows[1:] or rows

    def median(key: str) -> float | None:
        values = [float(r[key]) for r in steady if r.get(key) not in (None, "")]
        return statistics.median(values) if values else None

    rate = median("images_per_s")
    return {"epochs": rows, "images_per_s": rate, "data_wait_pct": median("data_wait_pct"),
            "gpu_idle_pct": median("gpu_idle_pct"),
            "vs_synthetic": rate / synthetic_images_per_s if rate and synthetic_images_per_s else None,
            "steady_epochs": len(steady) if len(rows) > 1 else 0}


def run_train(planned: Planned, root: Path, work: Path, seconds: float, run: Run) -> StepResult:
    """The training run, ended at its share; its figures from its records."""
    from bench.queries import ok_rows, rate, trained_model  # the e2e synthetic figure of this same check

    result = StepResult(planned.step.name, "ok", estimate_s=planned.estimate_s)
    out, log = work / "train", work / "train.log"
    code = wait_process(start_process(train_command(root, out, planned.options), log), seconds)
    # The training run's model is python -m train's default, GoogLeNet: against its e2e step.
    light = next((rate(r) for r in ok_rows(run, "e2e", backend="synthetic")
                  if trained_model(r) == "googlenet"), None)
    if (out / "epochs.csv").is_file():
        result.details = train_figures(out, light)
    if code is None:
        result.status, result.reason = "cut", f"ended at its share of the budget ({seconds:.0f} s)"
    elif code != 0:
        result.status, result.reason = "failed", f"exit status {code}: {last_line(log)}"
    return result
