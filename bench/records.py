"""The run file: who ran what where (machine, versions, command, settings) and one record per
measurement, as dataclasses that read and write its JSON; ``publish`` writes it after every
job, ``python -m bench report`` reads it back."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
import torch

from bench.measure import Measurement, StepFigures
from bench.scale import SIZES, ScaleFigures

FORMAT = "dali-pipelines-bench/2"  # run files without it (older formats) are not read
# Least warm-up and repeat times, and batches per repeat: the full sweep, and --quick.
TIMING = {"full": {"warmup_s": 1.0, "repeat_s": 2.0, "repeat_batches": 2},
          "quick": {"warmup_s": 0.5, "repeat_s": 1.0, "repeat_batches": 1}}
Status = Literal["ok", "skipped", "error"]  # skipped: the backend cannot do the workload
_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "DALI": "nvidia-dali-cuda120",
             "tensorflow": "tensorflow-cpu", "pillow": "pillow", "numpy": "numpy"}


@dataclass(frozen=True)
class Settings:
    """A run's choices, resolved and validated by the command line."""

    sections: tuple[str, ...]
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    device: str  # "cpu" | "gpu": where batches are delivered
    batch_size: int
    max_workers: int
    repeats: int = 3
    warmup_s: float = TIMING["full"]["warmup_s"]
    repeat_s: float = TIMING["full"]["repeat_s"]
    repeat_batches: int = int(TIMING["full"]["repeat_batches"])  # each repeat has at least this many batches
    soak_epochs: int = 30
    timeout_s: float = 600.0
    quick: bool = False
    scale_files: tuple[int, ...] = SIZES  # the scale section's tree sizes
    e2e_model: str = "googlenet"  # what e2e and e2e-sweep train (each record names its own, Record.model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); ``scale_files`` only with the scale section and
        ``e2e_model`` only when it is not GoogLeNet, so a run file written before either existed
        reads and writes back byte for byte."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if "scale" not in self.sections:
            del out["scale_files"]
        if out["e2e_model"] == "googlenet":
            del out["e2e_model"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """The settings ``to_dict`` wrote (lists become tuples)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)


@dataclass(frozen=True)
class Machine:
    """The machine a run ran on."""

    cpu: str  # the model string
    cores: int | None
    memory_gb: float
    gpu: str | None  # CUDA device 0's name; None without a visible CUDA GPU
    os: str


@dataclass(frozen=True)
class RunData:
    """The images a run read (every job the same verified list)."""

    name: str  # the ImageFolder root
    images: int
    classes: int


@dataclass(frozen=True)
class TuneFigures:
    """The tune section on one device: the tuner as shipped (hill climbing within its default
    budget), the exhaustive grid of the same space, and the defaults, the climb's choice and the
    grid's best point measured again in turn by the same measurement."""

    space: dict[str, list[Any]]  # setting -> candidates, the same for the climb and the grid
    hill: dict[str, Any]  # the climb's TuneResult.to_record(): every scoring, its time
    grid: dict[str, Any]  # the grid's
    points: dict[str, dict[str, Any]]  # "defaults", "tuned", "grid best" -> their settings
    rates: dict[str, list[float]]  # the same names -> img/s of each round (one point shares its scores)

    def median(self, name: str) -> float:
        """Median img/s of ``name``'s point over the rounds measured in turn."""
        return statistics.median(self.rates[name])


@dataclass(frozen=True)
class Record:
    """One measurement as the run file keeps it: the job (its timing, then its ``RunSpec``
    fields), the outcome, the figures and the machine's load when it ended."""

    section: str
    backend: str
    warmup_s: float
    repeat_s: float
    repeat_images: int
    repeats: int
    warmup_batches: int
    passes: bool
    step_ms: float
    source: str
    workload: str
    batch_size: int
    workers: int
    device: str
    seed: int
    hw_decoder_load: float | None
    status: Status
    reason: str  # why it was skipped or failed; "" when ok
    measurement: Measurement | None  # None unless ok
    consumer: StepFigures | None  # the training step's GPU figures (e2e); None for other consumers
    load_avg_1m: float
    traceback: str | None = None  # of a job that raised
    prefetch: int | None = None  # the spec's prefetch queue depth (e2e-sweep); written only when set
    tune: TuneFigures | None = None  # the tune section's figures (its ``measurement`` is None)
    scale: ScaleFigures | None = None  # the scale section's figures (its records have no measurement)
    model: str | None = None  # e2e, e2e-sweep: the model the step trained (absent in older files: GoogLeNet)

    @property
    def ok(self) -> bool:
        """Measured (neither skipped nor failed)."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The record as the run file holds it: ``consumer`` ``{}`` when None, ``traceback``,
        ``prefetch``, ``tune``, ``scale`` and ``model`` only when set."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["measurement"] = None if self.measurement is None else self.measurement.to_dict()
        out["consumer"] = {} if self.consumer is None else dataclasses.asdict(self.consumer)
        for optional in ("traceback", "prefetch", "tune", "scale", "model"):
            if out[optional] is None:
                del out[optional]
        if self.tune is not None:
            out["tune"] = dataclasses.asdict(self.tune)
        if self.scale is not None:
            out["scale"] = dataclasses.asdict(self.scale)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """The record ``to_dict`` wrote."""
        m, consumer = data["measurement"], data["consumer"]
        tune, scale = data.get("tune"), data.get("scale")
        return cls(**{**data, "measurement": None if m is None else Measurement.from_dict(m),
                      "consumer": StepFigures(**consumer) if consumer else None,
                      "tune": None if tune is None else TuneFigures(**tune),
                      "scale": None if scale is None else ScaleFigures(**scale)})


@dataclass
class Run:
    """A run file: who ran what where, and one record per measurement (``results`` grows as the
    sweep goes)."""

    started: str  # ISO 8601, UTC, to the second
    date: str
    stem: str  # the run's file names without suffix: machine and start time
    command: str
    machine: Machine
    versions: dict[str, str | None]  # library -> version; None: not installed
    settings: Settings  # ``sections``: those that had jobs
    data: RunData
    left_out: dict[str, str]  # backend not run by default here -> why
    results: list[Record] = dataclasses.field(default_factory=list)

    @property
    def device(self) -> str:
        """Where batches were delivered: "cpu" or "gpu"."""
        return self.settings.device

    @property
    def quick(self) -> bool:
        """A ``--quick`` run."""
        return self.settings.quick

    def to_dict(self) -> dict[str, Any]:
        """The run file's JSON content."""
        return {"format": FORMAT, "started": self.started, "date": self.date, "stem": self.stem,
                "command": self.command, "machine": dataclasses.asdict(self.machine),
                "versions": self.versions, "device": self.device, "quick": self.quick,
                "settings": self.settings.to_dict(), "data": dataclasses.asdict(self.data),
                "left_out": self.left_out, "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """The run ``to_dict`` wrote; ValueError for another format."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} run (format {data.get('format')!r})")
        return cls(started=data["started"], date=data["date"], stem=data["stem"], command=data["command"],
                   machine=Machine(**data["machine"]), versions=data["versions"],
                   settings=Settings.from_dict(data["settings"]), data=RunData(**data["data"]),
                   left_out=data["left_out"], results=[Record.from_dict(r) for r in data["results"]])


def cpu_model() -> str:
    """The CPU model string from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> Machine:
    """CPU, cores, memory, GPU and OS of this machine."""
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        os=platform.platform(),
    )


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Python and library versions (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in _PACKAGES.items():
        found[name] = _version(dist) or (_version("tensorflow") if name == "tensorflow" else None)
    return found


def machine_slug(machine: Machine) -> str:
    """Short file-name-safe machine name, e.g. ``cpu-2core`` or ``nvidia-h100-80gb-hbm3-16core``."""
    slug = re.sub(r"[^a-z0-9]+", "-", (machine.gpu or "cpu").lower()).strip("-")
    return f"{slug}-{machine.cores}core"


def command_line(argv: list[str]) -> str:
    """The command as run, e.g. ``python -m bench --quick`` (``argv``: the arguments given to main)."""
    prog = "dali-bench" if sys.argv[0].endswith("dali-bench") else "python -m bench"
    return " ".join([prog, *map(shlex.quote, argv)])


def new_run(argv: list[str], settings: Settings, data: RunData, left_out: dict[str, str]) -> Run:
    """The header of a run, with an empty ``results`` list that the sweep fills."""
    now = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    return Run(started=now.isoformat(timespec="seconds"), date=now.strftime("%Y-%m-%d"),
               stem=f"{machine_slug(machine)}-{now:%Y-%m-%d-%H%M%S}", command=command_line(argv),
               machine=machine, versions=versions(), settings=settings, data=data, left_out=left_out)


def read_run(path: Path) -> Run | None:
    """The run in ``path``; None for a file that is no run file of this format (another JSON, an
    older format). ValueError, naming the file, for one of this format that does not read as a run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    try:
        return Run.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path} is marked {FORMAT} but does not read as a run ({type(err).__name__}: "
                         f"{err}); move it out of {path.parent}") from None


def newest_run(out_dir: Path) -> tuple[Path, Run]:
    """The run file in ``out_dir`` that started last, and its run."""
    runs = [(path, run) for path in out_dir.glob("*.json") if (run := read_run(path)) is not None]
    if not runs:
        raise FileNotFoundError(
            f"no benchmark run in {out_dir} (files of older formats are not read); "
            f"run `python -m bench --out {out_dir}` first")
    return max(runs, key=lambda item: item[1].started)
