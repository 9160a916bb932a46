"""The check's files in OUT, few and small (a borrowed machine hands back at most eight):

- ``check.log``: every line the check printed (the plan, one line per step and per job);
- ``check.json``: the plan, each step's outcome and figures, the targets against the figures;
- ``summary.json``: ``python -m bench report --json`` of the check's benchmark run;
- ``check.md``: the steps, targets, tests and training figures, then the benchmark's tables;
- ``check.tar.gz``: all of the above plus the benchmark run's files (JSON, CSV, Markdown, PNG),
  the tests' log and the training run's records and log.

Each is rewritten whole after every step and every benchmark job, so a run cut short keeps
everything up to its last completed job.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.check.claims import claim_lines, verdicts
from bench.check.execute import StepResult
from bench.check.plan import FINAL_S, Plan, Planned
from bench.queries import summary
from bench.records import Run
from bench.report import render_markdown
from dali_pipelines._util.atomic import atomic_write, write_atomic, write_json_atomic

FORMAT = "dali-pipelines-check/1"
FILES = ("check.log", "check.json", "summary.json", "check.md", "check.tar.gz")
# What the tarball takes from the work folder (the sample set and checkpoints stay out).
WORK_FILES = ("tests.log", "train.log", "train/config.json", "train/steps.csv", "train/epochs.csv")


@dataclass
class CheckState:
    """Everything the files are written from; grows as the steps run."""

    command: str
    plan: Plan
    run: Run  # the benchmark run every bench step adds to
    results_dir: Path  # where the run's own files are written
    results: dict[str, StepResult] = field(default_factory=dict)  # by step name, as they finish
    elapsed_s: float = 0.0
    exit_status: int | None = None  # None while running
    stopped: str = ""  # why the check stopped before its end ("" when it did not)

    def outcome(self, planned: Planned) -> StepResult:
        """The step's result, or how it stands: skipped in the plan, not reached yet."""
        done = self.results.get(planned.step.name)
        if done is not None:
            return done
        if not planned.runs:
            return StepResult(planned.step.name, "skipped", planned.reason)
        reason = f"not reached: {self.stopped}" if self.stopped else "not reached yet"
        return StepResult(planned.step.name, "cut", reason, estimate_s=planned.estimate_s)

    def summary(self) -> dict[str, Any]:
        """``python -m bench report --json`` of the benchmark run so far."""
        return summary(self.run, self.results_dir / f"{self.run.stem}.json")

    def to_dict(self) -> dict[str, Any]:
        """``check.json``."""
        p = self.plan
        return {"format": FORMAT, "command": self.command, "started": self.run.started,
                "machine": dataclasses.asdict(self.run.machine), "versions": self.run.versions,
                "device": p.setup.device, "budget_s": p.setup.budget_s, "elapsed_s": round(self.elapsed_s, 1),
                "exit_status": self.exit_status, "stopped": self.stopped,
                "level": dataclasses.asdict(p.level), "estimate_s": round(p.total_s(), 1),
                "spent_before_plan_s": round(p.setup.spent_s, 1), "final_s": FINAL_S,
                "steps": [{**self.outcome(s).to_dict(), "about": s.step.about, "planned": s.detail}
                          for s in p.steps],
                "claims": verdicts(self.summary()), "bench_run": self.run.stem}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def step_lines(state: CheckState) -> list[str]:
    """One table row per step: status, seconds against the estimate, what it did or why not."""
    rows = []
    for planned in state.plan.steps:
        r = state.outcome(planned)
        took = f"{r.seconds:.0f} ({r.estimate_s:.0f})" if r.status != "skipped" else "-"
        note = r.reason or planned.detail
        rows.append(f"| {planned.step.name} | {r.status} | {took} | {note} |")
    return ["**Steps**", "", "| step | status | seconds (estimate) | what, or why not |", "|---|---|---|---|",
            *rows, ""]


def tests_lines(state: CheckState) -> list[str]:
    """The tests' counts and each failed test."""
    r = state.results.get("tests")
    if r is None or not r.details:
        return []
    d = r.details
    lines = [f"**Tests** (`pytest -m gpu`): {d['passed']} passed, {d['failed']} failed, {d['error']} errors, "
             f"{d['skipped']} skipped; {d['summary']}", ""]
    return lines + [f"- failed: `{name}`" for name in d["failures"]] + ([""] if d["failures"] else [])


def train_lines(state: CheckState) -> list[str]:
    """The training run's steady figures, against the e2e step on synthetic data."""
    r = state.results.get("train")
    if r is None or not r.details.get("epochs"):
        return []
    d = r.details
    steady = d["steady_epochs"]
    which = f"median of the {steady} epochs after the first" if steady else "its one epoch"
    return [f"**Training** (`python -m train --device gpu`, {which}): {_fmt(d['images_per_s'], '.0f')} "
            "img/s, "
            f"{_fmt(d['vs_synthetic'], '.3f')} of the e2e step on synthetic data; data wait "
            f"{_fmt(d['data_wait_pct'], '.1f')}%, GPU idle {_fmt(d['gpu_idle_pct'], '.1f')}%", ""]


def render(state: CheckState) -> str:
    """``check.md``."""
    m, s = state.run.machine, state.plan.setup
    stopped = f"; stopped by {state.stopped}" if state.stopped else ""
    head = [f"# Check of {m.gpu or 'a machine without a GPU'} ({m.cores} cores), {state.run.date}", "",
            f"Command: `{state.command}`  ",
            f"Budget {s.budget_s:g} s, took {state.elapsed_s:.0f} s; plan level '{state.plan.level.name}', "
            f"estimated {state.plan.total_s():.0f} s{stopped}", ""]
    parts = [*head, *step_lines(state), *claim_lines(verdicts(state.summary())), *tests_lines(state),
             *train_lines(state), "## The benchmark run", "", render_markdown(state.run)]
    return "\n".join(parts).rstrip() + "\n"


class Outputs:
    """The OUT folder: the log as it grows, the other files rewritten by ``write``."""

    def __init__(self, out_dir: Path, work: Path) -> None:
        self.out_dir, self.work = out_dir, work
        out_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(out_dir / "check.log", "w", encoding="utf-8")  # noqa: SIM115 (open for the run)

    def line(self, text: str = "") -> None:
        """Print ``text`` and keep it in check.log."""
        print(text, flush=True)
        self.write_log(text + "\n")

    def write_log(self, text: str) -> None:
        """Append ``text`` to check.log (flushed: a kill loses nothing written)."""
        self._log.write(text)
        self._log.flush()

    @property
    def progress_stream(self) -> Any:
        """A stream for the sweep's progress lines: stderr and check.log."""
        outputs = self

        class _Tee(io.TextIOBase):
            def write(self, text: str) -> int:
                sys.stderr.write(text)
                outputs.write_log(text)
                return len(text)

            def flush(self) -> None:
                sys.stderr.flush()

        return _Tee()

    def write(self, state: CheckState, *, final: bool = False) -> None:
        """Rewrite check.json, summary.json, check.md and the tarball (with the figures when ``final``)."""
        if final:
            try:
                from bench.plots import plot_run  # matplotlib: once, at the end

                plot_run(state.run, state.results_dir)
            except Exception as err:  # figures are a convenience: the files below matter more
                self.line(f"figures not drawn: {type(err).__name__}: {err}")
        write_json_atomic(self.out_dir / "check.json", state.to_dict())
        write_json_atomic(self.out_dir / "summary.json", state.summary())
        write_atomic(self.out_dir / "check.md", render(state))
        self._tarball(state)

    def _tarball(self, state: CheckState) -> None:
        members = [(self.out_dir / name, f"check/{name}") for name in FILES if name != "check.tar.gz"]
        members += [(path, f"check/results/{path.name}") for path in sorted(state.results_dir.glob("[!.]*"))]
        members += [(self.work / name, f"check/{name}") for name in WORK_FILES]
        with atomic_write(self.out_dir / "check.tar.gz", "wb") as handle, \
                tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for path, name in members:
                if path.is_file():
                    tar.add(path, arcname=name)

    def close(self) -> None:
        """Close check.log."""
        self._log.close()
