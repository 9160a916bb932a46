"""The check's run: the plan's steps in order, the tests beside the sample, every result written
before the next step starts, and the last bundle however the run ends."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from pathlib import Path

from bench.check.execute import (
    PROJECT_ROOT,
    Clock,
    Interrupted,
    StepResult,
    finish_tests,
    pytest_command,
    run_bench,
    run_train,
    start_process,
)
from bench.check.outputs import CheckState, Outputs
from bench.check.plan import Plan, Planned
from bench.data import load_jpeg_folder
from bench.failures import one_line
from bench.publish import publish, saver
from bench.records import Record, RunData, new_run
from bench.sweep import SYNTHETIC, start_job_server
from dali_pipelines import ImageFolderData, make_sample_dataset
from dali_pipelines.sources import split_folders

EXIT_FAILED = 1  # a step, test or measurement failed (the rest ran and is kept)
EXIT_STOPPED = {"SIGTERM": 143, "Ctrl-C": 130}


class Check:
    """One run of the check over ``plan``, writing into ``outputs``."""

    def __init__(self, plan: Plan, clock: Clock, outputs: Outputs, work: Path, *, argv: list[str],
                 data: Path | None) -> None:
        self.plan, self.clock, self.outputs, self.work = plan, clock, outputs, work
        self.data = data  # --data, or None: the sample set
        results = work / "results"
        results.mkdir()
        jobs = [j for p in plan.steps for j in p.jobs]
        left_out = {b: why for p in plan.steps for b, why in p.left_out.items()}
        settings = dataclasses.replace(
            plan.settings, backends=tuple(dict.fromkeys(j.backend for j in jobs if j.backend != SYNTHETIC)),
            workloads=tuple(dict.fromkeys(j.spec.workload for j in jobs)))
        run = new_run(argv, settings, RunData(name="", images=0, classes=0), left_out)
        self.state = CheckState(run.command, plan, run, results)
        self._save_record = saver(run, results)
        self.files: ImageFolderData | None = None
        self.root: Path | None = None  # the split root with train/ and val/
        self._tests: tuple[subprocess.Popen, StepResult, float, float] | None = None

    # ---------------------------------------------------------------- the run

    def run(self) -> int:
        """Every planned step; the exit status (0, ``EXIT_FAILED``, or that of a stop)."""
        try:
            for planned in self.plan.steps:
                if planned.runs:
                    self._run_step(planned)
        except (Interrupted, KeyboardInterrupt) as stop:
            self._end_tests(now=True)
            self.state.stopped = "SIGTERM" if isinstance(stop, Interrupted) else "Ctrl-C"
        failed = [r for r in self.state.results.values() if r.status == "failed"]
        status = EXIT_STOPPED.get(self.state.stopped, EXIT_FAILED if failed else 0)
        self.state.exit_status, self.state.elapsed_s = status, self.clock.elapsed()
        self.outputs.line(f"check: {self._verdict(failed)}; took {self.state.elapsed_s:.0f} s of "
                          f"{self.plan.setup.budget_s:g}; files in {self.outputs.out_dir}")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the last bundle is written whatever comes now
        self.outputs.write(self.state, final=True)
        return status

    def _verdict(self, failed: list[StepResult]) -> str:
        if self.state.stopped:
            return f"stopped by {self.state.stopped}"
        cut = [r.name for r in self.state.results.values() if r.status == "cut"]
        parts = [f"failed: {', '.join(r.name for r in failed)}" if failed else "no step failed"]
        return "; ".join(parts + ([f"cut short: {', '.join(cut)}"] if cut else []))

    def _run_step(self, planned: Planned) -> None:
        name = planned.step.name
        self.outputs.line(f"-- {name}: {planned.detail} (~{planned.estimate_s:.0f} s)")
        started = time.monotonic()
        try:
            result = self._step(planned)
        except Exception as err:  # a failed step is recorded; the next one runs
            result = StepResult(name, "failed", one_line(f"{type(err).__name__}: {err}"),
                                estimate_s=planned.estimate_s)
        if planned.step.kind == "sample":
            self._end_tests()
        if result is None:  # the tests, running in the background
            return
        result.seconds = time.monotonic() - started
        self._finish(result)

    def _finish(self, result: StepResult) -> None:
        self.state.results[result.name] = result
        note = f": {result.reason}" if result.reason else ""
        self.outputs.line(f"   {result.name}: {result.status} in {result.seconds:.0f} s{note}")
        self.state.elapsed_s = self.clock.elapsed()
        self.outputs.write(self.state)

    def _step(self, planned: Planned) -> StepResult | None:
        kind = planned.step.kind
        if kind == "tests":
            self._start_tests(planned)
            return None
        if kind == "sample":
            return self._sample(planned)
        if self.files is None:
            return StepResult(planned.step.name, "skipped", "no data: the sample step failed")
        share = self.clock.share(self.plan, planned)
        if kind == "bench":
            return run_bench(planned, self.files, save=self._save, seconds=share,
                             seconds_left=self.clock.left, log=self.outputs.progress_stream)
        if self.root is None:
            return StepResult(planned.step.name, "skipped", "the data has no val/ beside train/")
        return run_train(planned, self.root, self.work, share, self.state.run)

    # ---------------------------------------------------------------- the kinds of step

    def _start_tests(self, planned: Planned) -> None:
        bound = min(planned.options["bound_s"], self.clock.share(self.plan, planned))
        proc = start_process(pytest_command(self.work), self.work / "tests.log", cwd=PROJECT_ROOT)
        result = StepResult(planned.step.name, "ok", estimate_s=planned.estimate_s)
        self._tests = (proc, result, time.monotonic() + bound, time.monotonic())

    def _end_tests(self, *, now: bool = False) -> None:
        """Wait for the tests (up to their bound; ``now``: not at all) and record them; nothing
        when none run."""
        if self._tests is None:
            return
        proc, result, deadline, started = self._tests
        self._tests = None
        finish_tests(proc, self.work / "tests.log", 0.0 if now else deadline - time.monotonic(), result)
        result.seconds = time.monotonic() - started
        self._finish(result)

    def _sample(self, planned: Planned) -> StepResult:
        setup = self.plan.setup
        start_job_server()  # its torch import overlaps the sample's making
        if setup.make_sample:
            root = make_sample_dataset(self.work / "sample", images=setup.images, seed=0,
                                       workers=setup.workers)
        else:
            assert self.data is not None
            root = self.data
        splits = split_folders(root)
        self.files = load_jpeg_folder(splits.get("train", root), on_bad_file="skip")
        self.root = root if "val" in splits else None
        self.state.run.data = RunData(name=str(self.files.root), images=len(self.files),
                                      classes=len(self.files.classes))
        publish(self.state.run, self.state.results_dir, plots=False)  # the run's files exist from here
        return StepResult(planned.step.name, "ok", estimate_s=planned.estimate_s,
                          details={"images": len(self.files), "classes": len(self.files.classes),
                                   "root": str(root)})

    def _save(self, record: Record) -> None:
        self._save_record(record)
        self.state.elapsed_s = self.clock.elapsed()
        self.outputs.write(self.state)
