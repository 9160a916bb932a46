"""The check's plan: every step's jobs and estimated seconds, fitted to the budget before anything runs.

Estimates are allowances, not measurements: a bench job costs ``sweep.START_S`` plus its timed
minimum (warm-up and repeats) plus what starting it on a GPU, building the e2e model or filling a
DataLoader's first batch adds (the constants below, explained in docs/gpu-check.md). When the
steps do not fit, the plan takes the first of ``LEVELS`` that does (shorter repeats, a shorter
bound on the tests, fewer throughput workloads), with as many e2e-sweep points as fit (at least
``MIN_SWEEP_POINTS`` before a shorter level is tried); if even the last level does not fit,
steps are dropped, lowest ``keep`` first. While the check runs, ``execute`` guards the clock.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from bench.backends import BACKENDS
from bench.check.steps import STEPS, Step
from bench.records import TIMING, Settings
from bench.sweep import E2E_BATCH_SIZE, SECTIONS, START_S, SYNTHETIC, Job, plan_section

# Per-job allowances beyond START_S (seconds).
GPU_JOB_START_S = 3.0  # a CUDA context, nvJPEG and the DALI graph on the GPU
E2E_JOB_START_S = 4.0  # the model (GoogLeNet, ResNet-50) built on the GPU; cuDNN's kernel search in warm-up
LOADER_IMAGE_S = 0.01  # a DataLoader's first batch is built by one worker: this much per image
DATALOADER_BACKENDS = ("torch-pil", "torch-tv")
# The other steps' allowances.
SAMPLE_IMAGE_S = 0.025  # one core: crop, resize and encode one sample JPEG
VERIFY_IMAGE_S = 0.001  # scanning and the header pass, per file
POOL_START_S = 1.0  # forking the sample writers
TRAIN_START_S = 30.0  # python -m train: imports, verification, two DALI graphs, the model, cuDNN
TRAIN_STEP_S = 0.06  # one GoogLeNet step of batch 256, loader included
TRAIN_EPOCH_END_S = 2.0  # evaluation of val/ and a checkpoint
TRAIN_EPOCHS = 3  # the first holds the start-up; the later ones are the steady figures
TRAIN_MAX_STEPS = 90  # a large --data is cut to this many steps
FINAL_S = 8.0  # the last bundle: figures, report, tarball
MIN_SWEEP_POINTS = 4  # the first point and each setting moved once (bench.sweep.sweep_points)


@dataclass(frozen=True)
class Level:
    """How long each measurement is: the timing of every bench job and the bound on the tests."""

    name: str
    warmup_s: float
    repeat_s: float
    repeat_batches: int
    tests_s: float
    all_workloads: bool  # False: the throughput steps measure train only


def _preset(name: str, tests_s: float) -> Level:
    """A level with bench's own timing preset ``name`` (records.TIMING)."""
    timing = TIMING[name]
    return Level(name, warmup_s=timing["warmup_s"], repeat_s=timing["repeat_s"],
                 repeat_batches=int(timing["repeat_batches"]), tests_s=tests_s, all_workloads=True)


LEVELS = (
    _preset("full", tests_s=120.0),
    _preset("quick", tests_s=90.0),
    Level("short", warmup_s=0.2, repeat_s=0.3, repeat_batches=1, tests_s=60.0, all_workloads=True),
    Level("short, train only", warmup_s=0.2, repeat_s=0.3, repeat_batches=1, tests_s=60.0,
          all_workloads=False),
)


@dataclass(frozen=True)
class Setup:
    """What the plan needs to know about this machine and the command's options."""

    device: str  # "cpu" | "gpu"
    gpu_visible: bool
    workers: int
    images: int  # in the sample to make, or in --data
    train_images: int  # of those, in train/
    make_sample: bool  # False: --data is read as it is
    has_val: bool  # the data has val/ (the training step needs it)
    tests_skip: str  # why the tests do not run ("" when they do)
    budget_s: float
    spent_s: float  # already gone when the plan is made (interpreter start, imports)
    backends: tuple[str, ...] | None = None  # --backends: only these; None: every step's own

    @property
    def batch_size(self) -> int:
        """The benchmark's batch: 256 on a GPU, 64 on CPU, at most half the train images."""
        return max(1, min({"gpu": 256, "cpu": 64}[self.device], self.train_images // 2))


@dataclass
class Planned:
    """A step as planned: whether it runs (else why not), its estimate, its jobs and options."""

    step: Step
    runs: bool
    reason: str = ""  # why it does not run
    estimate_s: float = 0.0
    detail: str = ""  # what it will do, for the plan's line
    jobs: list[Job] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # bench: backend -> why it does not run
    options: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Plan this step out, with the reason."""
        self.runs, self.reason, self.estimate_s, self.jobs = False, reason, 0.0, []


@dataclass
class Plan:
    """Every step, in order, at one level."""

    setup: Setup
    level: Level
    settings: Settings  # of the bench jobs
    steps: list[Planned]

    def by_name(self, name: str) -> Planned:
        """The planned step called ``name``."""
        return next(p for p in self.steps if p.step.name == name)

    def total_s(self) -> float:
        """Estimated seconds of every step that runs; the tests overlap the sample."""
        tests = sum(p.estimate_s for p in self.steps if p.step.kind == "tests")
        sample = sum(p.estimate_s for p in self.steps if p.step.kind == "sample")
        others = sum(p.estimate_s for p in self.steps if p.step.kind not in ("tests", "sample"))
        return max(tests, sample) + others

    def usable_s(self) -> float:
        """Seconds the steps may take: the budget less what is spent and the last bundle."""
        return self.setup.budget_s - self.setup.spent_s - FINAL_S

    def fits(self) -> bool:
        """Whether the steps' estimate fits the budget."""
        return self.total_s() <= self.usable_s()


def job_estimate(job: Job) -> float:
    """Seconds one bench job is planned at: start-up, timed minimum and its kind's allowances."""
    if job.skip_reason():
        return 0.0
    extra = GPU_JOB_START_S if job.spec.device == "gpu" else 0.0
    if job.section in ("e2e", "e2e-sweep"):
        extra += E2E_JOB_START_S
    if job.backend in DATALOADER_BACKENDS:
        extra += LOADER_IMAGE_S * job.spec.batch_size
    return START_S + job.minimum_s() + extra


def gpu_reason(setup: Setup) -> str:
    """Why a GPU step does not run on this machine."""
    return ("needs a CUDA GPU and none is visible here" if not setup.gpu_visible
            else "needs --device gpu")


# ---------------------------------------------------------------- one step at one level

def _tests(p: Planned, setup: Setup, level: Level) -> None:
    if setup.tests_skip:
        p.skip(setup.tests_skip)
    elif setup.device != "gpu":
        p.skip(gpu_reason(setup))
    else:
        p.options["bound_s"] = level.tests_s
        p.estimate_s, p.detail = level.tests_s, f"at most {level.tests_s:.0f} s"


def _sample(p: Planned, setup: Setup) -> None:
    verify = setup.images * VERIFY_IMAGE_S
    if setup.make_sample:
        p.estimate_s = POOL_START_S + setup.images * SAMPLE_IMAGE_S / setup.workers + verify
        p.detail = f"{setup.images} photos on {setup.workers} processes, verified"
    else:
        p.estimate_s, p.detail = verify, f"--data: {setup.images} files verified"


def _train(p: Planned, setup: Setup) -> None:
    steps_per_epoch = setup.train_images // E2E_BATCH_SIZE
    if setup.device != "gpu":
        p.skip(gpu_reason(setup))
    elif not setup.has_val:
        p.skip("needs train/ and val/ in --data")
    elif steps_per_epoch == 0:
        p.skip(f"needs at least {E2E_BATCH_SIZE} train images (one batch)")
    else:
        steps = min(TRAIN_EPOCHS * steps_per_epoch, TRAIN_MAX_STEPS)
        epochs = math.ceil(steps / steps_per_epoch)
        p.options.update(batch_size=E2E_BATCH_SIZE, epochs=epochs, max_steps=steps)
        p.estimate_s = TRAIN_START_S + steps * TRAIN_STEP_S + epochs * TRAIN_EPOCH_END_S
        p.detail = f"{steps} steps of {E2E_BATCH_SIZE} in {epochs} epochs"


def _runnable(step: Step, setup: Setup) -> tuple[list[str], dict[str, str], str]:
    """(backends that can run, {backend left out: why}, why the step cannot run or "")."""
    if step.section not in SECTIONS:
        return [], {}, f"bench.sweep has no {step.section!r} section in this version"
    if step.needs_gpu and setup.device != "gpu":
        return [], {}, gpu_reason(setup)
    asked = [b for b in step.backends if setup.backends is None or b in setup.backends]
    if not asked:
        return [], {}, "none of its backends is in --backends"
    left_out = {name: why for name in asked if (why := _unavailable(name, setup))}
    runs = [b for b in asked if b not in left_out]
    return runs, left_out, "" if runs else _grouped(left_out)


def _unavailable(name: str, setup: Setup) -> str | None:
    """Why backend ``name`` cannot run in this setup; None when it can."""
    backend = BACKENDS.get(name)
    if backend is None:
        return "not registered in bench.backends"
    if backend.gpu_only and setup.device == "gpu" and setup.gpu_visible:
        return None  # also when the plan is made for a GPU this machine lacks (--plan-only)
    return backend.unavailable_reason(setup.device)


def _grouped(reasons: dict[str, str]) -> str:
    """``{name: why}`` as "a, b: why; c: other why"."""
    names: dict[str, list[str]] = {}
    for name, why in reasons.items():
        names.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(group)}: {why}" for why, group in names.items())


def _bench(p: Planned, setup: Setup, level: Level, base: Settings, sweep_points: int | None) -> None:
    backends, p.left_out, why = _runnable(p.step, setup)
    if why:
        p.skip(why)
        return
    workloads = p.step.workloads if level.all_workloads else p.step.workloads[:1]
    settings = dataclasses.replace(base, backends=tuple(backends), workloads=workloads,
                                   e2e_model=p.step.e2e_model)
    jobs = plan_section(settings, p.step.section)
    if p.step.section == "e2e-sweep" and sweep_points is not None:
        light = [j for j in jobs if j.backend == SYNTHETIC]
        jobs = light + [j for j in jobs if j.backend != SYNTHETIC][:sweep_points]
    if not any(j.backend != SYNTHETIC for j in jobs):
        p.skip("no job for these backends")
        return
    p.jobs, p.estimate_s = jobs, sum(map(job_estimate, jobs))
    p.detail = f"{len(jobs)} jobs: {', '.join(backends)} x {', '.join(workloads)}"


def build(setup: Setup, level: Level, *, sweep_points: int | None = None,
          dropped: frozenset[str] = frozenset()) -> Plan:
    """Every step planned at ``level`` (``sweep_points``: the e2e-sweep's first N; None: all),
    the ``dropped`` ones planned out for the budget."""
    sections = tuple(dict.fromkeys(s.section for s in STEPS if s.kind == "bench" and s.name not in dropped
                                   and not _runnable(s, setup)[2]))
    base = Settings(sections=sections, backends=(), workloads=(), device=setup.device,
                    batch_size=setup.batch_size, max_workers=setup.workers, warmup_s=level.warmup_s,
                    repeat_s=level.repeat_s, repeat_batches=level.repeat_batches)
    steps = []
    for step in STEPS:
        p = Planned(step, runs=True)
        if step.kind == "tests":
            _tests(p, setup, level)
        elif step.kind == "sample":
            _sample(p, setup)
        elif step.kind == "train":
            _train(p, setup)
        else:
            _bench(p, setup, level, base, sweep_points)
        if p.runs and step.name in dropped:
            p.skip(f"does not fit --budget {setup.budget_s:g} s (about {p.estimate_s:.0f} s)")
        steps.append(p)
    return Plan(setup, level, dataclasses.replace(base, sections=sections), steps)


def _most_sweep_points(plan: Plan) -> int:
    """How many e2e-sweep points fit beside the other steps of ``plan`` (planned with all points)."""
    sweep = plan.by_name("e2e-sweep")
    points = [j for j in sweep.jobs if j.backend != SYNTHETIC]
    if not sweep.runs or not points:
        return 0
    light = sum(job_estimate(j) for j in sweep.jobs if j.backend == SYNTHETIC)
    fixed = plan.total_s() - sweep.estimate_s + light
    room = plan.usable_s() - fixed
    return max(0, min(len(points), int(room // job_estimate(points[0]))))


def fit(setup: Setup) -> Plan:
    """The richest plan that fits ``setup.budget_s``; see the module's docstring."""
    for level in LEVELS:
        plan = build(setup, level)
        if plan.fits():
            return plan
        if plan.by_name("e2e-sweep").runs:
            points = _most_sweep_points(plan)
            if points >= MIN_SWEEP_POINTS or (level is LEVELS[-1] and points > 0):
                return build(setup, level, sweep_points=points)
    level, dropped = LEVELS[-1], frozenset[str]()
    plan = build(setup, level)
    droppable = [p.step for p in plan.steps if p.runs and p.step.kind != "sample"]
    for step in sorted(droppable, key=lambda s: s.keep):
        if plan.fits():
            break
        dropped |= {step.name}
        plan = build(setup, level, dropped=dropped)
    return plan


def describe(plan: Plan) -> list[str]:
    """The plan as lines for people: one per step with its estimate, then the total."""
    s, level = plan.setup, plan.level
    lines = [f"plan: {s.device}, {s.workers} workers, batch {s.batch_size}; level '{level.name}' (warm-up >= "
             f"{level.warmup_s:g} s, {plan.settings.repeats} repeats >= {level.repeat_s:g} s each)"]
    width = max(len(p.step.name) for p in plan.steps)
    for p in plan.steps:
        if p.runs:
            lines.append(f"  {p.step.name:<{width}}  ~{p.estimate_s:5.0f} s  {p.detail}")
            if p.left_out:
                lines.append(f"  {'':<{width}}            left out: {_grouped(p.left_out)}")
        else:
            lines.append(f"  {p.step.name:<{width}}  skipped   {p.reason}")
    lines.append(f"  total ~{plan.total_s():.0f} s (tests beside the sample) + {FINAL_S:.0f} s for the last "
                 f"bundle, {s.spent_s:.0f} s already spent; budget {s.budget_s:g} s")
    return lines
