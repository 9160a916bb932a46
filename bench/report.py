"""What a run says: Markdown tables for people, one JSON summary for tools, and the files.

Every ratio is between figures of the same run on the same machine. The report states what
was measured; what the project aims at is said in the README, not decided here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.backends import DALI_BACKENDS, REFERENCE, WORKLOADS
from bench.records import save_run
from bench.sweep import SYNTHETIC
from dali_pipelines import atomic_write

# ---------------------------------------------------------------- reading records


def ok_rows(run: dict[str, Any], section: str, **match: Any) -> list[dict[str, Any]]:
    """Successful records of ``section`` whose fields equal ``match``."""
    return [r for r in run["results"] if r["section"] == section and r["status"] == "ok"
            and all(r.get(k) == v for k, v in match.items())]


def rate(row: dict[str, Any]) -> float:
    """Median images/s of a record."""
    return row["measurement"]["images_per_s"]


def backends_of(run: dict[str, Any]) -> list[str]:
    """Backends measured in the run, in run order, synthetic data excluded."""
    return list(dict.fromkeys(r["backend"] for r in run["results"] if r["backend"] != SYNTHETIC))


def skipped_rows(run: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """Records of ``section`` that a backend skipped (it cannot do the workload), with the reason."""
    return [r for r in run["results"] if r["section"] == section and r["status"] == "skipped"]


def workloads_of(run: dict[str, Any]) -> list[str]:
    """Workloads the throughput section measured (or a backend skipped), in declaration order."""
    done = {r["workload"] for r in [*ok_rows(run, "throughput"), *skipped_rows(run, "throughput")]}
    return [w for w in WORKLOADS if w in done]


def throughput(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{backend: {workload: median img/s}} of the throughput section."""
    out: dict[str, dict[str, float]] = {}
    for r in ok_rows(run, "throughput"):
        out.setdefault(r["backend"], {})[r["workload"]] = rate(r)
    return out


def aug_ratios(run: dict[str, Any]) -> dict[str, float]:
    """{backend: its train-aug img/s / its own train img/s}: what RandAugment costs each loader."""
    return {b: r["train-aug"] / r["train"] for b, r in throughput(run).items()
            if "train" in r and "train-aug" in r}


def skipped(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{backend: {workload: why it was not run}} of the throughput section."""
    out: dict[str, dict[str, str]] = {}
    for r in skipped_rows(run, "throughput"):
        out.setdefault(r["backend"], {})[r["workload"]] = r["reason"]
    return out


def e2e_key(row: dict[str, Any]) -> str:
    """An e2e loader's name: the backend, or ``backend+workload`` when it fed a workload other
    than train (``dali-gpu+train-aug``); synthetic data is just ``synthetic``."""
    plain = row["backend"] == SYNTHETIC or row["workload"] == "train"
    return row["backend"] if plain else f"{row['backend']}+{row['workload']}"


def ratios_to_reference(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{dali backend: {workload: its img/s / dali-ref's img/s}}, same run, same workload."""
    rates = throughput(run)
    ref = rates.get(REFERENCE, {})
    return {b: {w: rates[b][w] / ref[w] for w in rates[b] if w in ref}
            for b in DALI_BACKENDS if b in rates and ref}


def e2e_figures(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per loader in the e2e section (keyed by ``e2e_key``): efficiency, data wait, GPU idle and
    step time vs synthetic."""
    rows = {e2e_key(r): r for r in ok_rows(run, "e2e")}
    light = rows.get(SYNTHETIC)
    out = {}
    for backend, r in rows.items():
        step = r["consumer"].get("gpu_step_ms")
        light_step = light["consumer"].get("gpu_step_ms") if light else None
        out[backend] = {
            "images_per_s": rate(r),
            "efficiency": rate(r) / rate(light) if light else None,
            "data_wait_frac": r["measurement"]["data_wait_frac"],
            "gpu_idle_frac": r["consumer"].get("gpu_idle_frac"),
            "gpu_step_ms": step,
            "step_vs_synthetic": step / light_step if step and light_step else None,
        }
    return out


def soak_figures(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per soaked backend: memory after the first timed epoch (epoch 2) and the last, growth."""
    out = {}
    for r in ok_rows(run, "soak"):
        m = r["measurement"]
        first, last = m["repeat_pss_mb"][0], m["repeat_pss_mb"][-1]
        gpu = m.get("repeat_gpu_mb")
        out[r["backend"]] = {
            "epochs": len(m["repeat_pss_mb"]) + 1, "first_mb": first, "last_mb": last,
            "growth_pct": 100.0 * (last - first) / first, "images_per_s": rate(r),
            "gpu_growth_mb": gpu[-1] - gpu[0] if gpu else None, "memory_metric": m["memory_metric"],
        }
    return out


def shards_figures(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per workload of the shards section: files and shards img/s, their ratio, CPU costs."""
    rows = {(r["workload"], r["source"]): r for r in ok_rows(run, "shards")}
    out = {}
    for (workload, source), r in rows.items():
        other = rows.get((workload, "shards"))
        if source != "files" or other is None:
            continue
        out[workload] = {"backend": r["backend"], "files": rate(r), "shards": rate(other),
                         "ratio": rate(other) / rate(r),
                         "cpu_files": r["measurement"]["cpu_s_per_1000"],
                         "cpu_shards": other["measurement"]["cpu_s_per_1000"]}
    return out


def storage_figures(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per workload: img/s of the same images loose and as shards, from local disk (the storage
    section's jobs, else the shards section's) and from the local S3 server; S3 / local ratios."""
    out: dict[str, dict[str, Any]] = {}
    for r in [*ok_rows(run, "shards"), *ok_rows(run, "storage")]:  # storage's own local jobs win
        out.setdefault(r["workload"], {"backend": r["backend"]})[r["source"]] = rate(r)
    for f in out.values():
        for form in ("files", "shards"):
            local, remote = f.get(form), f.get(f"s3-{form}")
            f[f"s3_vs_local_{form}"] = remote / local if local and remote else None
    return {w: f for w, f in out.items() if "s3-files" in f or "s3-shards" in f}


def summary(run: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """The JSON summary of a run (``python -m bench report --json``)."""
    e2e = e2e_figures(run)
    return {
        "device": run["device"], "cpus": run["machine"]["cores"], "gpu": run["machine"]["gpu"],
        "cpu_model": run["machine"]["cpu"], "command": run["command"], "date": run["date"],
        "started": run["started"], "quick": run["quick"], "file": str(path) if path else None,
        "throughput": throughput(run),
        "train_aug_vs_train": aug_ratios(run),
        "ratio_to_dali_ref": ratios_to_reference(run),
        "e2e_efficiency": {b: f["efficiency"] for b, f in e2e.items() if b != SYNTHETIC},
        "e2e_gpu_idle_frac": {b: f["gpu_idle_frac"] for b, f in e2e.items()},
        "e2e_step_vs_synthetic": {b: f["step_vs_synthetic"] for b, f in e2e.items() if b != SYNTHETIC},
        "soak_growth_pct": {b: f["growth_pct"] for b, f in soak_figures(run).items()},
        "shards_vs_files": {w: f["ratio"] for w, f in shards_figures(run).items()},
        "s3_vs_local": {w: {"files": f["s3_vs_local_files"], "shards": f["s3_vs_local_shards"]}
                        for w, f in storage_figures(run).items()},
        "skipped": skipped(run),
        "errors": sum(r["status"] == "error" for r in run["results"]),
    }


# ---------------------------------------------------------------- Markdown


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    m = row["measurement"]
    return f"{m['images_per_s']:.0f} ({m['images_per_s_min']:.0f}-{m['images_per_s_max']:.0f})"


def _memory(m: dict[str, Any]) -> str:
    value = f"{m['peak_pss_mb']:.0f}"
    return value if m.get("memory_metric", "pss") == "pss" else f"{value} (RSS)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def header_lines(run: dict[str, Any]) -> list[str]:
    """Machine, versions, data, settings, date and command of the run."""
    m, d, s = run["machine"], run["data"], run["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v)
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, GPU: {m['gpu'] or 'none'}  ",
        f"Versions: {versions}  ",
        f"Data: {d['images']} JPEGs in {d['classes']} classes ({d['name']}); batches delivered to "
        f"{run['device']}; started {run['started']}  ",
        f"Timing: warm-up >= {s['warmup_s']:g} s, {s['repeats']} repeats of >= {s['repeat_s']:g} s and "
        f">= {s['repeat_batches']} batches; figures are the median (min-max) of the repeats  ",
        f"Command: `{run['command']}`",
        "",
    ]
    if run["left_out"]:
        lines += ["Not run here: " + "; ".join(f"`{b}` ({why})" for b, why in run["left_out"].items()), ""]
    return lines


def _throughput_row(run: dict[str, Any], backend: str, workloads: list[str], cpu_of: list[str],
                    with_ratio: bool) -> list[str] | None:
    """One backend's row of the throughput table; None when it has no record there."""
    cells = {r["workload"]: r for r in ok_rows(run, "throughput", backend=backend)}
    skips = skipped(run).get(backend, {})
    if not cells and not skips:
        return None
    row = [f"`{backend}`", *("skipped" if w in skips else _cell(cells.get(w)) for w in workloads)]
    if with_ratio:
        ratio = aug_ratios(run).get(backend)
        row.append("-" if ratio is None else f"{ratio:.2f}x")
    row.append(" / ".join(f"{cells[w]['measurement']['cpu_s_per_1000']:.2f}" if w in cells else "-"
                          for w in cpu_of))
    main = cells.get(cpu_of[0]) or next(iter(cells.values()), None)
    if main is None:
        return [*row, "-", "-"]
    m = main["measurement"]
    return [*row, _memory(m), "-" if m["peak_gpu_mb"] is None else f"{m['peak_gpu_mb']:.0f}"]


def throughput_lines(run: dict[str, Any]) -> list[str]:
    """img/s per backend per workload, train-aug over train, CPU cost and peak memory of train."""
    workloads = workloads_of(run)
    if not workloads:
        return []
    main = "train" if "train" in workloads else workloads[0]
    with_ratio = {"train", "train-aug"} <= set(workloads)
    cpu_of = [main, "train-aug"] if with_ratio else [main]
    rows = [row for b in backends_of(run) if (row := _throughput_row(run, b, workloads, cpu_of, with_ratio))]
    first = (ok_rows(run, "throughput") or skipped_rows(run, "throughput"))[0]
    title = (f"**Throughput, images/s** (batch {first['batch_size']}, {run['settings']['max_workers']} "
             f"workers or threads; `naive` is sequential)")
    header = ["backend", *workloads, *(["train-aug / train"] if with_ratio else []),
              f"CPU s / 1000 img ({' / '.join(cpu_of)})", f"peak PSS MiB ({main}; process + workers)",
              "peak GPU MiB"]
    notes = [f"- `{b}` {w}: skipped, {why}" for b, whys in skipped(run).items() for w, why in whys.items()]
    return [title, "", *_table(header, rows), *([*notes, ""] if notes else []),
            *reference_lines(run, workloads)]


def reference_lines(run: dict[str, Any], workloads: list[str]) -> list[str]:
    """Our DALI backends' img/s over dali-ref's, per workload (same run)."""
    ratios = ratios_to_reference(run)
    if not ratios:
        return []
    rows = [[f"`{b}`", *(f"{r[w]:.2f}x" if w in r else "-" for w in workloads)] for b, r in ratios.items()]
    ref_device = "mixed decode, GPU" if run["device"] == "gpu" else "CPU"
    stock = "; its train-aug runs DALI's stock RandAugment suite" if "train-aug" in workloads else ""
    return [f"**This project's DALI graphs against NVIDIA's example graph** (`{REFERENCE}`, "
            f"{ref_device}{stock}; img/s ratio, same run)", "", *_table(["backend", *workloads], rows)]


def error_lines(run: dict[str, Any]) -> list[str]:
    """Jobs that failed, with the reason (skipped ones are not failures: their tables say why)."""
    failed = [r for r in run["results"] if r["status"] == "error"]
    if not failed:
        return []
    return ["**Failed jobs**", "", *(f"- {r['section']}: `{r['backend']}` {r['workload']}: {r['reason']}"
                                     for r in failed), ""]


def scaling_lines(run: dict[str, Any]) -> list[str]:
    """Train img/s over workers/threads (the throughput section's train row is the top count)."""
    rows = ok_rows(run, "scaling")
    if not rows:
        return []
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    rows += [r for r in ok_rows(run, "throughput", workload="train") if r["backend"] in backends]
    counts = sorted({r["workers"] for r in rows})
    table = [[f"`{b}`", *(_cell(next((r for r in rows if r["backend"] == b and r["workers"] == n), None))
                          for n in counts)] for b in backends]
    return ["**Scaling over workers/threads** (train, images/s)", "",
            *_table(["backend", *map(str, counts)], table)]


def hw_decoder_lines(run: dict[str, Any]) -> list[str]:
    """dali-gpu train img/s over hw_decoder_load."""
    rows = sorted(ok_rows(run, "hw-decoder"), key=lambda r: r["hw_decoder_load"])
    table = [[f"{r['hw_decoder_load']:g}", _cell(r), f"{r['measurement']['cpu_s_per_1000']:.2f}"]
             for r in rows]
    return ["**`dali-gpu` over hw_decoder_load** (train)", "",
            *_table(["hw_decoder_load", "img/s", "CPU s / 1000 img"], table)] if rows else []


def overlap_lines(run: dict[str, Any]) -> list[str]:
    """Each loader feeding a simulated accelerator step: efficiency and data wait."""
    rows = ok_rows(run, "overlap")
    table = []
    for step in sorted({r["step_ms"] for r in rows}):
        group = [r for r in rows if r["step_ms"] == step]
        light = next((r for r in group if r["backend"] == SYNTHETIC), None)
        for r in group:
            eff = f"{rate(r) / rate(light):.2f}" if light else "-"
            table.append([f"{step:g} ms", f"`{r['backend']}`", _cell(r), eff,
                          _pct(r["measurement"]["data_wait_frac"])])
    if not table:
        return []
    title = ("**Overlap with a simulated accelerator step** (a sleep per batch, no CPU used; train, batch "
             f"{rows[0]['batch_size']}): efficiency = img/s / img/s on synthetic data")
    return [title, "", *_table(["step", "loader", "img/s", "efficiency", "data wait %"], table)]


def e2e_lines(run: dict[str, Any]) -> list[str]:
    """GoogLeNet training fed by each GPU loader (and with train-aug) and by synthetic data."""
    figures = e2e_figures(run)
    if not figures:
        return []
    table = [[f"`{b}`", f"{f['images_per_s']:.0f}",
              "-" if f["efficiency"] is None else f"{f['efficiency']:.3f}", _pct(f["data_wait_frac"]),
              _pct(f["gpu_idle_frac"]), "-" if f["gpu_step_ms"] is None else f"{f['gpu_step_ms']:.1f}",
              "-" if f["step_vs_synthetic"] is None else f"{f['step_vs_synthetic']:.3f}"]
             for b, f in figures.items()]
    batch = ok_rows(run, "e2e")[0]["batch_size"]
    return [f"**End to end: GoogLeNet training steps** (batch {batch}, bf16 autocast, channels_last, SGD)",
            "",
            "Efficiency = img/s / img/s on synthetic on-GPU data. GPU idle = gaps between steps on the GPU "
            "timeline (the loader was late). Step time vs synthetic = GPU time inside a step over the "
            "same on synthetic data: above 1 when the loader's own GPU work slows the step down "
            "(shared SMs and memory bandwidth), which gaps do not show. `+train-aug`: the loader also "
            "runs RandAugment (2 operations, magnitude 9).",
            "",
            *_table(["loader", "img/s", "efficiency", "data wait %", "GPU idle % (gaps)", "GPU ms / step",
                     "step time vs synthetic"], table)]


def soak_lines(run: dict[str, Any]) -> list[str]:
    """Memory per backend after epoch 2 and after the last epoch."""
    figures = soak_figures(run)
    out = []
    for backend, f in figures.items():
        gpu = "" if f["gpu_growth_mb"] is None else f", GPU memory {f['gpu_growth_mb']:+.0f} MiB"
        kind = "PSS" if f["memory_metric"] == "pss" else "RSS"
        out.append(f"- `{backend}`: {kind} {f['first_mb']:.0f} MiB after epoch 2 -> {f['last_mb']:.0f} MiB "
                   f"after epoch {f['epochs']} ({f['growth_pct']:+.1f}%){gpu}; {f['images_per_s']:.0f} img/s")
    return ["**Soak: memory over many epochs of the train graph**", "", *out, ""] if out else []


def shards_lines(run: dict[str, Any]) -> list[str]:
    """The same images from WebDataset shards and from loose files."""
    figures = shards_figures(run)
    table = [[w, f"`{f['backend']}`", f"{f['files']:.0f}", f"{f['shards']:.0f}", f"{f['ratio']:.2f}x",
              f"{f['cpu_files']:.2f} / {f['cpu_shards']:.2f}"] for w, f in figures.items()]
    if not table:
        return []
    return ["**Shards vs loose files** (same images; page cache as the run found it)", "",
            *_table(["workload", "backend", "files img/s", "shards img/s", "shards / files",
                     "CPU s / 1000 img, files / shards"], table)]


def storage_lines(run: dict[str, Any]) -> list[str]:
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


def render_markdown(run: dict[str, Any]) -> str:
    """All tables of a run as Markdown."""
    parts = [*header_lines(run), *throughput_lines(run), *error_lines(run), *scaling_lines(run),
             *hw_decoder_lines(run), *overlap_lines(run), *e2e_lines(run), *soak_lines(run),
             *shards_lines(run), *storage_lines(run)]
    return "\n".join(parts).rstrip() + "\n"


def saver(run: dict[str, Any], out_dir: Path) -> Callable[[dict[str, Any]], None]:
    """The sweep's callback: add a record to ``run`` and rewrite the run's files at once, so a
    late failure (or Ctrl-C) loses nothing measured so far."""
    def save(record: dict[str, Any]) -> None:
        run["results"].append(record)
        publish(run, out_dir, plots=False)
    return save


def publish(run: dict[str, Any], out_dir: Path, *, plots: bool) -> Path:
    """Write the run's JSON, CSV, Markdown (PNGs too with ``plots``) into ``out_dir``; the Markdown path."""
    save_run(run, out_dir)
    md = out_dir / f"{run['stem']}.md"
    with atomic_write(md, encoding="utf-8") as f:
        f.write(render_markdown(run))
    if plots:
        from bench.plots import plot_run  # matplotlib: only when figures are drawn

        plot_run(run, out_dir)
    return md
