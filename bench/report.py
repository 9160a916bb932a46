"""What a run says, as Markdown tables for people.

The report states what was measured; what the project aims at is said in
docs/benchmarks.md#what-is-aimed-at, not decided here.
"""

from __future__ import annotations

from bench.backends import REFERENCE
from bench.measure import Measurement
from bench.queries import (
    Search,
    TuneSummary,
    aug_ratios,
    backends_of,
    capped_figures,
    e2e_figures,
    e2e_models,
    e2e_sweep_figures,
    failed_rows,
    hw_decoder_rows,
    measured,
    model_title,
    ok_rows,
    overlap_efficiency,
    rank_startup,
    ratios_to_ours,
    ratios_to_reference,
    scale_rows,
    scaling,
    shards_figures,
    skipped,
    skipped_rows,
    soak_figures,
    storage_figures,
    trained_model,
    tune_figures,
    workloads_of,
)
from bench.queries import extrapolated as extrapolated_figures
from bench.queries import growth_exponents as growth
from bench.records import Record, Run
from bench.scale import IMAGENET_TRAIN, TEN_MILLION, ScaleFigures
from bench.sweep import DALI_FOR_DEVICE
from dali_pipelines.sources.capped import DEFAULT_QUALITY


def _cell(row: Record | None) -> str:
    if row is None:
        return "-"
    m = measured(row)
    return f"{m.images_per_s:.0f} ({m.images_per_s_min:.0f}-{m.images_per_s_max:.0f})"


def _memory(m: Measurement) -> str:
    value = f"{m.peak_pss_mb:.0f}"
    return value if m.memory_metric == "pss" else f"{value} (RSS)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def header_lines(run: Run) -> list[str]:
    """Machine, versions, data, settings, date and command of the run."""
    m, d, s = run.machine, run.data, run.settings
    versions = ", ".join(f"{k} {v}" for k, v in run.versions.items() if v)
    lines = [
        f"Machine: {m.cpu}, {m.cores} cores, {m.memory_gb} GB RAM, GPU: {m.gpu or 'none'}  ",
        f"Versions: {versions}  ",
        f"Data: {d.images} JPEGs in {d.classes} classes ({d.name}); batches delivered to "
        f"{run.device}; started {run.started}  ",
        f"Timing: warm-up >= {s.warmup_s:g} s, {s.repeats} repeats of >= {s.repeat_s:g} s and "
        f">= {s.repeat_batches} batches; figures are the median (min-max) of the repeats  ",
        f"Command: `{run.command}`",
        "",
    ]
    if run.left_out:
        lines += ["Not run here: " + "; ".join(f"`{b}` ({why})" for b, why in run.left_out.items()), ""]
    return lines


def _throughput_row(run: Run, backend: str, workloads: list[str], cpu_of: list[str],
                    with_ratio: bool) -> list[str] | None:
    """One backend's row of the throughput table; None when it has no record there."""
    cells = {r.workload: r for r in ok_rows(run, "throughput", backend=backend)}
    skips = skipped(run).get(backend, {})
    if not cells and not skips:
        return None
    row = [f"`{backend}`", *("skipped" if w in skips else _cell(cells.get(w)) for w in workloads)]
    if with_ratio:
        ratio = aug_ratios(run).get(backend)
        row.append("-" if ratio is None else f"{ratio:.2f}x")
    row.append(" / ".join(f"{measured(cells[w]).cpu_s_per_1000:.2f}" if w in cells else "-" for w in cpu_of))
    main = cells.get(cpu_of[0]) or next(iter(cells.values()), None)
    if main is None:
        return [*row, "-", "-"]
    m = measured(main)
    return [*row, _memory(m), "-" if m.peak_gpu_mb is None else f"{m.peak_gpu_mb:.0f}"]


def throughput_lines(run: Run) -> list[str]:
    """img/s per backend per workload, train-aug over train, CPU cost and peak memory of train."""
    workloads = workloads_of(run)
    if not workloads:
        return []
    main = "train" if "train" in workloads else workloads[0]
    with_ratio = {"train", "train-aug"} <= set(workloads)
    cpu_of = [main, "train-aug"] if with_ratio else [main]
    rows = [row for b in backends_of(run) if (row := _throughput_row(run, b, workloads, cpu_of, with_ratio))]
    first = (ok_rows(run, "throughput") or skipped_rows(run, "throughput"))[0]
    title = (f"**Throughput, images/s** (batch {first.batch_size}, {run.settings.max_workers} "
             f"workers or threads; `naive` is sequential)")
    header = ["backend", *workloads, *(["train-aug / train"] if with_ratio else []),
              f"CPU s / 1000 img ({' / '.join(cpu_of)})", f"peak PSS MiB ({main}; process + workers)",
              "peak GPU MiB"]
    notes = [f"- `{b}` {w}: skipped, {why}" for b, whys in skipped(run).items() for w, why in whys.items()]
    return [title, "", *_table(header, rows), *([*notes, ""] if notes else []),
            *reference_lines(run, workloads), *ours_lines(run, workloads)]


def reference_lines(run: Run, workloads: list[str]) -> list[str]:
    """Our DALI backends' img/s over dali-ref's, per workload (same run)."""
    ratios = ratios_to_reference(run)
    if not ratios:
        return []
    rows = [[f"`{b}`", *(f"{r[w]:.2f}x" if w in r else "-" for w in workloads)] for b, r in ratios.items()]
    ref_device = "mixed decode, GPU" if run.device == "gpu" else "CPU"
    stock = "; its train-aug runs DALI's stock RandAugment suite" if "train-aug" in workloads else ""
    return [f"**This project's DALI graphs against NVIDIA's example graph** (`{REFERENCE}`, "
            f"{ref_device}{stock}; img/s ratio, same run)", "", *_table(["backend", *workloads], rows)]


def ours_lines(run: Run, workloads: list[str]) -> list[str]:
    """Every other loader's img/s over this project's graph on the run's device; faster ones in bold."""
    ratios = ratios_to_ours(run)
    if not ratios:
        return []

    def cell(ratio: float | None) -> str:
        return "-" if ratio is None else f"**{ratio:.2f}x**" if ratio > 1.0 else f"{ratio:.2f}x"

    rows = [[f"`{b}`", *(cell(r.get(w)) for w in workloads)] for b, r in ratios.items()]
    ours = DALI_FOR_DEVICE[run.device]
    return [f"**Every other loader against this project's graph** (`{ours}`; img/s ratio, same run; "
            f"**bold**: faster than `{ours}` on that workload)", "", *_table(["backend", *workloads], rows)]


def error_lines(run: Run) -> list[str]:
    """Jobs that failed, with the reason (skipped ones are not failures: their tables say why)."""
    failed = failed_rows(run)
    if not failed:
        return []
    lines = [f"- {r.section}: `{r.backend}` {r.workload}: {r.reason}" for r in failed]
    return ["**Failed jobs**", "", *lines, ""]


def scaling_lines(run: Run) -> list[str]:
    """Train img/s over workers/threads (the throughput section's train row is the top count)."""
    found = scaling(run)
    if not found.by_backend:
        return []
    table = [[f"`{b}`", *(_cell(rows.get(n)) for n in found.counts)] for b, rows in found.by_backend.items()]
    return ["**Scaling over workers/threads** (train, images/s)", "",
            *_table(["backend", *map(str, found.counts)], table)]


def hw_decoder_lines(run: Run) -> list[str]:
    """dali-gpu train img/s over hw_decoder_load."""
    rows = hw_decoder_rows(run)
    table = [[f"{r.hw_decoder_load:g}", _cell(r), f"{measured(r).cpu_s_per_1000:.2f}"] for r in rows]
    return ["**`dali-gpu` over hw_decoder_load** (train)", "",
            *_table(["hw_decoder_load", "img/s", "CPU s / 1000 img"], table)] if rows else []


def overlap_lines(run: Run) -> list[str]:
    """Each loader feeding a simulated accelerator step: efficiency and data wait."""
    groups = overlap_efficiency(run)
    table = [[f"{step:g} ms", f"`{r.backend}`", _cell(r), "-" if eff is None else f"{eff:.2f}",
              _pct(measured(r).data_wait_frac)] for step, group in groups.items() for r, eff in group]
    if not table:
        return []
    batch = ok_rows(run, "overlap")[0].batch_size
    title = ("**Overlap with a simulated accelerator step** (a sleep per batch, no CPU used; train, batch "
             f"{batch}): efficiency = img/s / img/s on synthetic data")
    return [title, "", *_table(["step", "loader", "img/s", "efficiency", "data wait %"], table)]


def e2e_lines(run: Run) -> list[str]:
    """Each e2e model's training fed by each GPU loader (and with train-aug) and by synthetic data."""
    return [line for model in e2e_models(run) for line in _e2e_model_lines(run, model)]


def _e2e_model_lines(run: Run, model: str) -> list[str]:
    figures = e2e_figures(run, model)
    table = [[f"`{b}`", f"{f.images_per_s:.0f}",
              "-" if f.efficiency is None else f"{f.efficiency:.3f}", _pct(f.data_wait_frac),
              _pct(f.gpu_idle_frac), "-" if f.gpu_step_ms is None else f"{f.gpu_step_ms:.1f}",
              "-" if f.step_vs_synthetic is None else f"{f.step_vs_synthetic:.3f}"]
             for b, f in figures.items()]
    batch = ok_rows(run, "e2e")[0].batch_size
    return [f"**End to end: {model_title(model)} training steps** "
            f"(batch {batch}, bf16 autocast, channels_last, SGD)",
            "",
            "Efficiency = img/s / img/s on synthetic on-GPU data. GPU idle = gaps between steps on the GPU "
            "timeline (the loader was late). Step time vs synthetic = GPU time inside a step over the "
            "same on synthetic data: above 1 when the loader's own GPU work slows the step down "
            "(shared SMs and memory bandwidth), which gaps do not show. `+train-aug`: the loader also "
            "runs RandAugment (2 operations, magnitude 9).",
            "",
            *_table(["loader", "img/s", "efficiency", "data wait %", "GPU idle % (gaps)", "GPU ms / step",
                     "step time vs synthetic"], table)]


def e2e_sweep_lines(run: Run) -> list[str]:
    """The e2e step fed by dali-gpu at each (threads, hw_decoder_load, prefetch) point, fastest first."""
    points = e2e_sweep_figures(run)
    if not points:
        return []
    table = [[str(r.workers), f"{r.hw_decoder_load:g}", str(r.prefetch), f"{f.images_per_s:.0f}",
              "-" if f.efficiency is None else f"{f.efficiency:.3f}", _pct(f.data_wait_frac),
              _pct(f.gpu_idle_frac), "-" if f.step_vs_synthetic is None else f"{f.step_vs_synthetic:.3f}"]
             for r, f in points]
    batch = points[0][0].batch_size
    model = model_title(trained_model(points[0][0]))
    return [f"**End to end over DALI settings: `dali-gpu` feeding {model}** (batch {batch}; efficiency "
            "against synthetic data, fastest first)", "",
            *_table(["threads", "hw_decoder_load", "prefetch", "img/s", "efficiency", "data wait %",
                     "GPU idle % (gaps)", "step time vs synthetic"], table)]


def soak_lines(run: Run) -> list[str]:
    """Memory per backend after epoch 2 and after the last epoch."""
    figures = soak_figures(run)
    out = []
    for backend, f in figures.items():
        gpu = "" if f.gpu_growth_mb is None else f", GPU memory {f.gpu_growth_mb:+.0f} MiB"
        kind = "PSS" if f.memory_metric == "pss" else "RSS"
        out.append(f"- `{backend}`: {kind} {f.first_mb:.0f} MiB after epoch 2 -> {f.last_mb:.0f} MiB "
                   f"after epoch {f.epochs} ({f.growth_pct:+.1f}%){gpu}; {f.images_per_s:.0f} img/s")
    return ["**Soak: memory over many epochs of the train graph**", "", *out, ""] if out else []


def shards_lines(run: Run) -> list[str]:
    """The same images from WebDataset shards and from loose files."""
    figures = shards_figures(run)
    table = [[w, f"`{f.backend}`", f"{f.files:.0f}", f"{f.shards:.0f}", f"{f.ratio:.2f}x",
              f"{f.cpu_files:.2f} / {f.cpu_shards:.2f}"] for w, f in figures.items()]
    if not table:
        return []
    return ["**Shards vs loose files** (same images; page cache as the run found it)", "",
            *_table(["workload", "backend", "files img/s", "shards img/s", "shards / files",
                     "CPU s / 1000 img, files / shards"], table)]


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _with_peak(seconds: float, peak_mb: float, digits: int = 2) -> str:
    return f"{_num(seconds, digits)} (+{peak_mb:.0f})"


def scale_lines(run: Run) -> list[str]:
    """Start-up cost per tree size, its growth exponents, and what it comes to at ImageNet-1k and 10M."""
    rows = scale_rows(run)
    if not rows:
        return []
    table = [[f"{r.files:,}", _num(r.scan_s), _with_peak(r.cold_verify_s, r.cold_verify_peak_mb, 1),
              _with_peak(r.warm_verify_s, r.warm_verify_peak_mb), _num(r.cache_mb, 1),
              _with_peak(r.loader_s, r.loader_peak_mb), _with_peak(r.warm_loader_s, r.warm_loader_peak_mb),
              _num(r.apply_s), _bucket_cell(r)] for r in rows]
    header = ["files", "scan s", "cold verify s (MiB)", "warm verify s (MiB)", "cache MiB",
              "loader + first batch s (MiB)", "same, list found s (MiB)", "verdict applied s",
              "bucket listing s (MiB)"]
    return ["**Start-up at scale** (hard-linked JPEG trees, page cache warm; seconds, and peak MiB above "
            "the imports, for the loader above the scanned data; the bucket: the same names in a local "
            "S3 server, listed as training lists them)", "", *_table(header, table),
            *_growth_lines(rows), *_extrapolation_lines(rows)]


def _bucket_cell(r: ScaleFigures) -> str:
    if r.s3_list_s is None or r.s3_list_peak_mb is None:
        return "-"
    return _with_peak(r.s3_list_s, r.s3_list_peak_mb)


def _growth_lines(rows: list[ScaleFigures]) -> list[str]:
    exponents = growth(rows)
    if not exponents:
        return []
    spans = list(next(iter(exponents.values())))
    cells = [[name, *(_num(e.get(span)) for span in spans)] for name, e in exponents.items()]
    return ["Growth exponent b of figure ~ files^b between successive sizes (1: linear)", "",
            *_table(["figure", *spans], cells)]


def _extrapolation_lines(rows: list[ScaleFigures]) -> list[str]:
    startup = rank_startup(rows)
    if startup is None:
        return []
    at = {n: extrapolated_figures(rows, n) for n in (IMAGENET_TRAIN, TEN_MILLION)}
    cells = [[name, *(_num(at[n][name]) for n in at)] for name in at[IMAGENET_TRAIN]]
    return [f"Extrapolated with the exponent between the two largest sizes (ImageNet-1k train: "
            f"{IMAGENET_TRAIN:,} files)", "", *_table(["figure", *(f"{n:,} files" for n in at)], cells),
            f"- A non-zero rank's start-up under torchrun on ImageNet-1k ({startup.train_files:,} + "
            f"{startup.val_files:,} files), warm cache, imports aside: {startup.total_s:.1f} s (its scans "
            f"{startup.scan_s:.1f} s, waiting for rank 0 {startup.wait_s:.1f} s, its loaders and first "
            f"batch {startup.loaders_s:.1f} s)", ""]


def storage_lines(run: Run) -> list[str]:
    """The same images from local disk and from the local S3 server, loose and as shards."""
    def cell(value: float | None, ratio: bool = False) -> str:
        return "-" if value is None else (f"{value:.2f}x" if ratio else f"{value:.0f}")

    table = [[w, f"`{f['backend']}`", cell(f.get("files")), cell(f.get("s3-files")),
              cell(f["s3_vs_local_files"], True), cell(f.get("shards")), cell(f.get("s3-shards")),
              cell(f["s3_vs_local_shards"], True)] for w, f in storage_figures(run).items()]
    if not table:
        return []
    return ["**Local disk vs a local S3 server** (SeaweedFS on 127.0.0.1; DALI's own S3 reads)", "",
            *_table(["workload", "backend", "disk files img/s", "S3 files img/s", "S3 / disk",
                     "disk shards img/s", "S3 shards img/s", "S3 / disk"], table)]
def capped_lines(run: Run) -> list[str]:
    """The CPU train graph from shards capped at each max side, against the same shards uncapped."""
    figures = capped_figures(run)
    table = [["as stored" if f.max_side is None else f"{f.max_side} px", f"{f.images_per_s:.0f}",
              f"{f.cpu_ms_per_image:.2f}", "-" if f.cpu_vs_uncapped is None else f"{f.cpu_vs_uncapped:.2f}",
              "-" if f.rate_vs_uncapped is None else f"{f.rate_vs_uncapped:.2f}x"] for f in figures]
    if not table:
        return []
    return [f"**Capped resolution** (`to-shards --max-side`, JPEG quality {DEFAULT_QUALITY}; `dali-cpu` "
            "train graph; images within the cap are stored as they are)", "",
            *_table(["max side", "img/s", "CPU ms / img", "CPU vs as stored", "img/s vs as stored"], table)]
def _settings(point: dict) -> str:
    return ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in point.items())


def _search_cell(search: Search) -> str:
    end = "converged" if search.method == "hill" else "every point"
    end = end if search.complete else "stopped by the budget"
    return (f"{search.method}: {search.points} of {search.space} points, {search.scorings} scorings, "
            f"{search.seconds:.1f} s of {search.budget_s:g} s, {end}; scored {search.images_per_s:.0f}")


def _tune_row(f: TuneSummary, name: str) -> list[str]:
    low, high = f.spread[name]
    rate, rates = f.images_per_s[name], f.images_per_s
    search = {"tuned": _search_cell(f.hill), "grid best": _search_cell(f.grid)}.get(name, "-")
    return [name, _settings(f.points[name]), f"{rate:.0f} ({low:.0f}-{high:.0f})",
            f"{rate / rates['defaults']:.2f}x", f"{rate / rates['grid best']:.2f}x", search]


def tune_lines(run: Run) -> list[str]:
    """The tuner's choice beside the exhaustive grid's best point and the defaults, measured again
    in turn, with what each search cost."""
    out = []
    for backend, f in tune_figures(run).items():
        row = ok_rows(run, "tune", backend=backend)[0]
        title = (f"**Tuning the loader** (`{backend}`, {row.workload}, batch {row.batch_size}, the loader "
                 "alone): the tuner's choice (hill climbing from the defaults) beside the best point of "
                 "an exhaustive grid of the same space and the defaults, the three measured again in turn "
                 f"({f.rounds} rounds; median (min-max)); every scoring {row.warmup_s:g} s warm-up, then "
                 f"{row.repeats} repeats of {row.repeat_s:g} s")
        rows = [_tune_row(f, name) for name in ("defaults", "tuned", "grid best")]
        out += [title, "", *_table(["point", "settings", "img/s", "vs defaults", "vs grid best",
                                    "search (its own scores)"], rows)]
    return out


def render_markdown(run: Run) -> str:
    """All tables of a run as Markdown."""
    parts = [*header_lines(run), *throughput_lines(run), *error_lines(run), *scaling_lines(run),
             *hw_decoder_lines(run), *overlap_lines(run), *e2e_lines(run), *e2e_sweep_lines(run),
             *soak_lines(run), *shards_lines(run), *capped_lines(run), *storage_lines(run), *tune_lines(run),
             *scale_lines(run)]
    return "\n".join(parts).rstrip() + "\n"
