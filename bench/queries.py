"""Queries over a run's records: the figures the Markdown report, the plots and the JSON
summary all read, each computed here once.

Every ratio is between figures of the same run on the same machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends import DALI_BACKENDS, REFERENCE, WORKLOADS
from bench.measure import Measurement
from bench.records import Record, Run
from bench.scale import IMAGENET_TRAIN, IMAGENET_VAL, TEN_MILLION, ScaleFigures
from bench.sweep import DALI_FOR_DEVICE, E2E_MODELS, SYNTHETIC, UNCAPPED, capped_side


def ok_rows(run: Run, section: str, **match: object) -> list[Record]:
    """Successful records of ``section`` whose fields equal ``match``."""
    return [r for r in run.results if r.section == section and r.ok
            and all(getattr(r, k) == v for k, v in match.items())]


def measured(row: Record) -> Measurement:
    """The measurement of an ok record; ValueError for a skipped or failed one (it has none)."""
    if row.measurement is None:
        raise ValueError(f"{row.section}: {row.backend} {row.workload} has no measurement ({row.status})")
    return row.measurement


def rate(row: Record) -> float:
    """Median images/s of a record."""
    return measured(row).images_per_s


def backends_of(run: Run) -> list[str]:
    """Backends measured in the run, in run order, synthetic data excluded."""
    return list(dict.fromkeys(r.backend for r in run.results if r.backend != SYNTHETIC))


def skipped_rows(run: Run, section: str) -> list[Record]:
    """Records of ``section`` that a backend skipped (it cannot do the workload), with the reason."""
    return [r for r in run.results if r.section == section and r.status == "skipped"]


def failed_rows(run: Run) -> list[Record]:
    """Records of jobs that failed (raised, died or timed out), in run order."""
    return [r for r in run.results if r.status == "error"]


def workloads_of(run: Run) -> list[str]:
    """Workloads the throughput section measured (or a backend skipped), in declaration order."""
    done = {r.workload for r in [*ok_rows(run, "throughput"), *skipped_rows(run, "throughput")]}
    return [w for w in WORKLOADS if w in done]


def throughput(run: Run) -> dict[str, dict[str, float]]:
    """{backend: {workload: median img/s}} of the throughput section."""
    out: dict[str, dict[str, float]] = {}
    for r in ok_rows(run, "throughput"):
        out.setdefault(r.backend, {})[r.workload] = rate(r)
    return out


def aug_ratios(run: Run) -> dict[str, float]:
    """{backend: its train-aug img/s / its own train img/s}: what RandAugment costs each loader."""
    return {b: r["train-aug"] / r["train"] for b, r in throughput(run).items()
            if "train" in r and "train-aug" in r}


def skipped(run: Run) -> dict[str, dict[str, str]]:
    """{backend: {workload: why it was not run}} of the throughput section."""
    out: dict[str, dict[str, str]] = {}
    for r in skipped_rows(run, "throughput"):
        out.setdefault(r.backend, {})[r.workload] = r.reason
    return out


def e2e_key(row: Record) -> str:
    """An e2e loader's name: the backend, or ``backend+workload`` when it fed a workload other
    than train (``dali-gpu+train-aug``); synthetic data is just ``synthetic``."""
    plain = row.backend == SYNTHETIC or row.workload == "train"
    return row.backend if plain else f"{row.backend}+{row.workload}"


def ratios_to_reference(run: Run) -> dict[str, dict[str, float]]:
    """{dali backend: {workload: its img/s / dali-ref's img/s}}, same run, same workload."""
    rates = throughput(run)
    ref = rates.get(REFERENCE, {})
    return {b: {w: rates[b][w] / ref[w] for w in rates[b] if w in ref}
            for b in DALI_BACKENDS if b in rates and ref}


def ratios_to_ours(run: Run) -> dict[str, dict[str, float]]:
    """{other backend: {workload: its img/s / this project's graph's on the run's device}}, same run
    (``dali-cpu`` on a CPU run, ``dali-gpu`` on a GPU run): above 1, that loader is faster."""
    rates = throughput(run)
    ours = DALI_FOR_DEVICE[run.device]
    mine = rates.get(ours, {})
    return {b: {w: r[w] / mine[w] for w in r if w in mine} for b, r in rates.items()
            if b not in (ours, REFERENCE) and mine}


def _step_ms(row: Record | None) -> float | None:
    return None if row is None or row.consumer is None else row.consumer.gpu_step_ms


@dataclass(frozen=True)
class E2EFigures:
    """One loader feeding the e2e training step, against the same step fed synthetic data."""

    images_per_s: float
    efficiency: float | None  # img/s / synthetic img/s; None without a synthetic record
    data_wait_frac: float
    gpu_idle_frac: float | None
    gpu_step_ms: float | None
    step_vs_synthetic: float | None  # GPU time per step / the same on synthetic data


def _e2e_against(r: Record, light: Record | None) -> E2EFigures:
    """``r``'s e2e figures against ``light``, the same step fed synthetic data (None: absent)."""
    step, light_step = _step_ms(r), _step_ms(light)
    return E2EFigures(
        images_per_s=rate(r),
        efficiency=rate(r) / rate(light) if light else None,
        data_wait_frac=measured(r).data_wait_frac,
        gpu_idle_frac=None if r.consumer is None else r.consumer.gpu_idle_frac,
        gpu_step_ms=step,
        step_vs_synthetic=step / light_step if step and light_step else None,
    )


def trained_model(row: Record) -> str:
    """The model an e2e or e2e-sweep record's step trained (records that do not say: GoogLeNet)."""
    return row.model or "googlenet"


def model_title(model: str) -> str:
    """How a model is named in tables and figures: ``ResNet-50`` for ``resnet50``."""
    return E2E_MODELS.get(model, model)


def e2e_models(run: Run) -> list[str]:
    """The models the e2e section trained, the run's own (``--e2e-model``) first."""
    found = dict.fromkeys(trained_model(r) for r in ok_rows(run, "e2e"))
    return sorted(found, key=lambda model: model != run.settings.e2e_model)


def e2e_figures(run: Run, model: str | None = None) -> dict[str, E2EFigures]:
    """Per loader in the e2e section (keyed by ``e2e_key``) feeding ``model`` (None: the run's
    ``--e2e-model``): efficiency, data wait, GPU idle and step time vs synthetic."""
    model = model or run.settings.e2e_model
    rows = {e2e_key(r): r for r in ok_rows(run, "e2e") if trained_model(r) == model}
    light = rows.get(SYNTHETIC)
    return {backend: _e2e_against(r, light) for backend, r in rows.items()}


def e2e_sweep_figures(run: Run) -> list[tuple[Record, E2EFigures]]:
    """The e2e-sweep's points (threads, hw_decoder_load, prefetch in each record) with their
    figures, fastest first; against the sweep's synthetic record, else the e2e section's of the
    same model."""
    rows = ok_rows(run, "e2e-sweep")
    model = trained_model(rows[0]) if rows else run.settings.e2e_model
    light = next((r for r in [*rows, *ok_rows(run, "e2e")] if r.backend == SYNTHETIC
                  and trained_model(r) == model), None)
    points = [(r, _e2e_against(r, light)) for r in rows if r.backend != SYNTHETIC]
    return sorted(points, key=lambda item: -item[1].images_per_s)


@dataclass(frozen=True)
class SoakFigures:
    """A soaked backend's memory after the first timed epoch (epoch 2) and after the last."""

    epochs: int  # the warm-up epoch included
    first_mb: float
    last_mb: float
    growth_pct: float  # last over first
    images_per_s: float
    gpu_growth_mb: float | None  # device memory, last over first; None on CPU
    memory_metric: str  # "pss", or "rss" where the OS has no PSS


def soak_figures(run: Run) -> dict[str, SoakFigures]:
    """Per soaked backend: memory after the first timed epoch (epoch 2) and the last, growth."""
    out = {}
    for r in ok_rows(run, "soak"):
        m = measured(r)
        first, last = m.repeat_pss_mb[0], m.repeat_pss_mb[-1]
        gpu = m.repeat_gpu_mb
        out[r.backend] = SoakFigures(
            epochs=len(m.repeat_pss_mb) + 1, first_mb=first, last_mb=last,
            growth_pct=100.0 * (last - first) / first, images_per_s=rate(r),
            gpu_growth_mb=gpu[-1] - gpu[0] if gpu else None, memory_metric=m.memory_metric,
        )
    return out


@dataclass(frozen=True)
class ShardsFigures:
    """One workload read from WebDataset shards and from the same images as loose files."""

    backend: str
    files: float  # img/s
    shards: float  # img/s
    ratio: float  # shards / files
    cpu_files: float  # CPU s / 1000 img
    cpu_shards: float


def shards_figures(run: Run) -> dict[str, ShardsFigures]:
    """Per workload of the shards section: files and shards img/s, their ratio, CPU costs."""
    rows = {(r.workload, r.source): r for r in ok_rows(run, "shards")}
    out = {}
    for (workload, source), r in rows.items():
        other = rows.get((workload, "shards"))
        if source != "files" or other is None:
            continue
        out[workload] = ShardsFigures(backend=r.backend, files=rate(r), shards=rate(other),
                                      ratio=rate(other) / rate(r), cpu_files=measured(r).cpu_s_per_1000,
                                      cpu_shards=measured(other).cpu_s_per_1000)
    return out


def storage_figures(run: Run) -> dict[str, dict[str, Any]]:
    """Per workload: img/s of the same images loose and as shards, from local disk (the storage
    section's jobs, else the shards section's) and from the local S3 server; S3 / local ratios."""
    out: dict[str, dict[str, Any]] = {}
    for r in [*ok_rows(run, "shards"), *ok_rows(run, "storage")]:  # storage's own local jobs win
        out.setdefault(r.workload, {"backend": r.backend})[r.source] = rate(r)
    for f in out.values():
        for form in ("files", "shards"):
            local, remote = f.get(form), f.get(f"s3-{form}")
            f[f"s3_vs_local_{form}"] = remote / local if local and remote else None
    return {w: f for w, f in out.items() if "s3-files" in f or "s3-shards" in f}


@dataclass(frozen=True)
class CappedFigures:
    """The CPU train graph reading shards capped at ``max_side`` (None: the images as they are)."""

    max_side: int | None
    images_per_s: float
    cpu_ms_per_image: float  # CPU s / 1000 img: the whole graph's, decoding most of it
    cpu_vs_uncapped: float | None  # CPU per image / the uncapped shards'; None without them
    rate_vs_uncapped: float | None  # img/s / the uncapped shards'


def capped_figures(run: Run) -> list[CappedFigures]:
    """The capped section's records: the uncapped shards first, then by descending cap."""
    rows = {r.source: r for r in ok_rows(run, "capped")}
    base = rows.get(UNCAPPED)
    out = []
    for side, r in sorted(((capped_side(src), r) for src, r in rows.items()),
                          key=lambda item: (item[0] is not None, -(item[0] or 0))):
        m = measured(r)
        out.append(CappedFigures(
            max_side=side, images_per_s=m.images_per_s, cpu_ms_per_image=m.cpu_s_per_1000,
            cpu_vs_uncapped=m.cpu_s_per_1000 / measured(base).cpu_s_per_1000 if base else None,
            rate_vs_uncapped=m.images_per_s / rate(base) if base else None))
    return out


@dataclass(frozen=True)
class Scaling:
    """Train records over workers/threads: the counts measured and each backend's record at each."""

    counts: list[int]  # ascending, over every backend
    by_backend: dict[str, dict[int, Record]]  # backend -> {workers: record}, workers ascending


def scaling(run: Run) -> Scaling:
    """The scaling section's records plus, at the top count, the throughput section's train
    record of each backend scaled (one record per backend and count: the first in run order)."""
    rows = ok_rows(run, "scaling")
    backends = list(dict.fromkeys(r.backend for r in rows))
    rows += [r for r in ok_rows(run, "throughput", workload="train") if r.backend in backends]
    by_backend: dict[str, dict[int, Record]] = {b: {} for b in backends}
    for r in sorted(rows, key=lambda r: r.workers):  # stable: run order among equal counts
        by_backend[r.backend].setdefault(r.workers, r)
    return Scaling(sorted({r.workers for r in rows}), by_backend)


def hw_decoder_rows(run: Run) -> list[Record]:
    """The hw-decoder section's records by ascending hw_decoder_load."""
    return sorted(ok_rows(run, "hw-decoder"), key=lambda r: r.hw_decoder_load or 0.0)


def overlap_efficiency(run: Run) -> dict[float, list[tuple[Record, float | None]]]:
    """{step ms: [(record, its img/s / synthetic img/s at that step)]} of the overlap section,
    steps ascending; the efficiency is None where the step has no synthetic record."""
    rows = ok_rows(run, "overlap")
    out = {}
    for step in sorted({r.step_ms for r in rows}):
        group = [r for r in rows if r.step_ms == step]
        light = next((r for r in group if r.backend == SYNTHETIC), None)
        out[step] = [(r, rate(r) / rate(light) if light else None) for r in group]
    return out


# The scale section's figures that grow with the data set: seconds, then MiB.
SCALE_SECONDS = ("scan_s", "cold_verify_s", "warm_verify_s", "loader_s", "warm_loader_s", "apply_s",
                 "s3_list_s")
SCALE_MIB = ("scan_peak_mb", "cold_verify_peak_mb", "warm_verify_peak_mb", "cache_mb", "loader_peak_mb",
             "warm_loader_peak_mb", "list_mb", "s3_list_peak_mb")


def scale_rows(run: Run) -> list[ScaleFigures]:
    """The scale section's trees by ascending size (the first record of each size)."""
    found: dict[int, ScaleFigures] = {}
    for r in ok_rows(run, "scale"):
        if r.scale is not None:
            found.setdefault(r.scale.files, r.scale)
    return [found[n] for n in sorted(found)]


def growth_exponents(rows: list[ScaleFigures]) -> dict[str, dict[str, float]]:
    """{figure: {"<n1>-<n2>": b}}: the exponent b of figure ~ files^b between each two successive
    sizes that have it (1: linear); figures at zero or below are left out."""
    out: dict[str, dict[str, float]] = {}
    for name in (*SCALE_SECONDS, *SCALE_MIB):
        for a, b in itertools.pairwise(_having(rows, name)):
            low, high = getattr(a, name), getattr(b, name)
            if low > 0 and high > 0:
                exponent = math.log(high / low) / math.log(b.files / a.files)
                out.setdefault(name, {})[f"{a.files}-{b.files}"] = exponent
    return out


def at_size(rows: list[ScaleFigures], name: str, files: int) -> float | None:
    """Figure ``name`` at ``files`` files: the power law through the two measured sizes around it
    (beyond the largest, through the two largest); None with fewer than two sizes that have it."""
    rows = _having(rows, name)
    if len(rows) < 2:
        return None
    above = next((i for i, r in enumerate(rows) if r.files >= files), len(rows) - 1)
    a, b = rows[max(0, above - 1)], rows[max(1, above)]
    low, high = getattr(a, name), getattr(b, name)
    if low <= 0 or high <= 0:
        return max(low, high, 0.0) * files / b.files  # a figure at zero: linear from the larger
    exponent = math.log(high / low) / math.log(b.files / a.files)
    return high * (files / b.files) ** exponent


def _having(rows: list[ScaleFigures], name: str) -> list[ScaleFigures]:
    """The rows where figure ``name`` was measured (the bucket listing: the smaller trees only)."""
    return [r for r in rows if getattr(r, name) is not None]


def extrapolated(rows: list[ScaleFigures], files: int) -> dict[str, float | None]:
    """Every growing figure at ``files`` files (``at_size``)."""
    return {name: at_size(rows, name, files) for name in (*SCALE_SECONDS, *SCALE_MIB)}


@dataclass(frozen=True)
class RankStartup:
    """A non-zero rank's start-up under torchrun on a warm cache, from the scale figures: its own
    scans, the wait for rank 0 (its warm verification, the verdict applied and the reader lists
    found), then its own verdict applied, loaders built and first batch (imports not counted)."""

    train_files: int
    val_files: int
    scan_s: float
    wait_s: float
    loaders_s: float

    @property
    def total_s(self) -> float:
        return self.scan_s + self.wait_s + self.loaders_s


def rank_startup(rows: list[ScaleFigures], train: int = IMAGENET_TRAIN,
                 val: int = IMAGENET_VAL) -> RankStartup | None:
    """``RankStartup`` for ``train`` and ``val`` files (ImageNet-1k by default); None without two sizes."""
    if len(rows) < 2:
        return None

    def both(name: str) -> float:
        return sum(at_size(rows, name, n) or 0.0 for n in (train, val))

    return RankStartup(train_files=train, val_files=val, scan_s=both("scan_s"),
                       wait_s=both("warm_verify_s") + 2 * both("apply_s"), loaders_s=both("warm_loader_s"))


def scale_summary(run: Run) -> dict[str, Any] | None:
    """The scale section in the JSON summary; None when the run has none."""
    rows = scale_rows(run)
    if not rows:
        return None
    startup = rank_startup(rows)
    return {"files": [r.files for r in rows], "figures": [dataclasses.asdict(r) for r in rows],
            "growth_exponents": growth_exponents(rows),
            "extrapolated": {str(n): extrapolated(rows, n) for n in (IMAGENET_TRAIN, TEN_MILLION)
                             if len(rows) > 1},
            "imagenet_nonzero_rank_startup_s": None if startup is None else startup.total_s}


@dataclass(frozen=True)
class Search:
    """One search of the tune section: what it cost and how far it got."""

    method: str  # "hill" or "grid"
    seconds: float  # wall time, loader set-up included
    budget_s: float
    points: int  # distinct points scored
    space: int  # points in the space
    scorings: int  # confirmations included
    complete: bool  # hill: converged; grid: every point scored
    images_per_s: float  # the search's own score of the point it reports (chosen, or the grid's best)


def _search(record: dict[str, Any], point: str) -> Search:
    return Search(method=record["method"], seconds=record["seconds"], budget_s=record["budget_s"],
                  points=len({str(t["point"]) for t in record["trials"]}), space=record["space_size"],
                  scorings=len(record["trials"]), complete=record["complete"],
                  images_per_s=record["images_per_s"][point])


@dataclass(frozen=True)
class TuneSummary:
    """The tune section on one loader: the defaults, the climb's choice and the grid's best point
    measured again in turn (medians), their ratios, and the two searches."""

    points: dict[str, dict[str, Any]]  # "defaults", "tuned", "grid best" -> settings
    images_per_s: dict[str, float]  # the same names -> median of the rounds in turn
    spread: dict[str, tuple[float, float]]  # the same names -> (min, max) of the rounds
    rounds: int
    tuned_vs_grid_best: float
    tuned_vs_defaults: float
    hill: Search
    grid: Search


def tune_figures(run: Run) -> dict[str, TuneSummary]:
    """Per loader of the tune section (``dali-cpu`` or ``dali-gpu``): its ``TuneSummary``."""
    out = {}
    for r in ok_rows(run, "tune"):
        t = r.tune
        if t is None:
            continue
        rates = {name: t.median(name) for name in t.points}
        out[r.backend] = TuneSummary(
            points=t.points, images_per_s=rates, spread={n: (min(v), max(v)) for n, v in t.rates.items()},
            rounds=len(t.rates["tuned"]), tuned_vs_grid_best=rates["tuned"] / rates["grid best"],
            tuned_vs_defaults=rates["tuned"] / rates["defaults"], hill=_search(t.hill, "chosen"),
            grid=_search(t.grid, "best"))
    return out


def _e2e_summary(figures: dict[str, E2EFigures]) -> dict[str, dict[str, float | None]]:
    """One model's e2e figures for the JSON summary: efficiency, GPU idle, step time vs synthetic."""
    loaders = {b: f for b, f in figures.items() if b != SYNTHETIC}
    return {"efficiency": {b: f.efficiency for b, f in loaders.items()},
            "gpu_idle_frac": {b: f.gpu_idle_frac for b, f in figures.items()},
            "step_vs_synthetic": {b: f.step_vs_synthetic for b, f in loaders.items()}}


def summary(run: Run, path: Path | None = None) -> dict[str, Any]:
    """The JSON summary of a run (``python -m bench report --json``); ``scale`` only with that section."""
    e2e = e2e_figures(run)
    capped = {str(f.max_side): f.cpu_vs_uncapped for f in capped_figures(run) if f.max_side is not None}
    scale = scale_summary(run)
    return {
        "device": run.device, "cpus": run.machine.cores, "gpu": run.machine.gpu,
        "cpu_model": run.machine.cpu, "command": run.command, "date": run.date,
        "started": run.started, "quick": run.quick, "file": str(path) if path else None,
        "throughput": throughput(run),
        "train_aug_vs_train": aug_ratios(run),
        "ratio_to_dali_ref": ratios_to_reference(run),
        "ratio_to_ours": ratios_to_ours(run),
        "e2e_efficiency": {b: f.efficiency for b, f in e2e.items() if b != SYNTHETIC},
        "e2e_gpu_idle_frac": {b: f.gpu_idle_frac for b, f in e2e.items()},
        "e2e_step_vs_synthetic": {b: f.step_vs_synthetic for b, f in e2e.items() if b != SYNTHETIC},
        # Only for a run with e2e records: each model's figures, the run's own first.
        **({"e2e_by_model": {m: _e2e_summary(e2e_figures(run, m)) for m in e2e_models(run)}}
           if e2e_models(run) else {}),
        "e2e_sweep": [{"threads": r.workers, "hw_decoder_load": r.hw_decoder_load, "prefetch": r.prefetch,
                       "images_per_s": f.images_per_s, "efficiency": f.efficiency}
                      for r, f in e2e_sweep_figures(run)],
        "soak_growth_pct": {b: f.growth_pct for b, f in soak_figures(run).items()},
        "shards_vs_files": {w: f.ratio for w, f in shards_figures(run).items()},
        "s3_vs_local": {w: {"files": f["s3_vs_local_files"], "shards": f["s3_vs_local_shards"]}
                        for w, f in storage_figures(run).items()},
        "skipped": skipped(run),
        "errors": len(failed_rows(run)),
        # Only for a run with a capped section: the summary of a run without one keeps its keys.
        **({"capped_cpu_vs_uncapped": capped} if capped else {}),
        "failed": [{"section": r.section, "backend": r.backend, "workload": r.workload, "reason": r.reason}
                   for r in failed_rows(run)],
        **_tune_summary(run),
        **({"scale": scale} if scale is not None else {}),
    }


def _tune_summary(run: Run) -> dict[str, Any]:
    """``tune`` (per loader: the ratios and the climb's seconds) for a run with a tune section;
    nothing for one without."""
    figures = tune_figures(run)
    if not figures:
        return {}
    return {"tune": {b: {"tuned_vs_grid_best": f.tuned_vs_grid_best, "tuned_vs_defaults": f.tuned_vs_defaults,
                         "tuned": f.points["tuned"], "grid_best": f.points["grid best"],
                         "hill_s": f.hill.seconds, "grid_s": f.grid.seconds} for b, f in figures.items()}}
