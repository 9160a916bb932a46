"""The Markdown tables README quotes, rendered from one run's JSON (and the newest soak run)."""

from __future__ import annotations

from typing import Any

from bench.results import ok_rows
from bench.soak import GROWTH_TARGET_PCT
from bench.workloads import WORKLOADS

TARGETS_CPU = (  # (numerator, denominator, minimum ratio, strict: must exceed); issue 4, 2 cores, train
    ("dali-cpu", "torch-pil", 2.5, False), ("dali-cpu", "naive", 4.0, False),
    ("dali-cpu", "tfdata", 1.0, True))
TARGET_GPU_IMG_S = 15000.0  # dali-gpu, train workload, ImageNet-sized JPEGs (H100)
TARGET_GPU_VS_TORCH = 5.0  # dali-gpu / torch-pil, best worker counts, train
TARGET_E2E_EFFICIENCY = 0.97  # dali-gpu GoogLeNet img/s / synthetic-data img/s
NOT_MEASURED = "not measured (no GPU)"


def rate_cell(m: dict[str, Any]) -> str:
    """A measurement's img/s as ``median (min-max)``."""
    return f"{m['images_per_s']:.0f} ({m['images_per_s_min']:.0f}-{m['images_per_s_max']:.0f})"


def _rate(row: dict[str, Any]) -> str:
    return rate_cell(row["measurement"])


def _memory(m: dict[str, Any]) -> str:
    """Peak PSS in MiB, marked "(RSS)" where RSS was recorded (no PSS, or a file from before PSS)."""
    if "peak_pss_mb" not in m:
        return f"{m['peak_rss_mb']:.0f} (RSS)"
    value = f"{m['peak_pss_mb']:.0f}"
    return value if m.get("memory_metric", "pss") == "pss" else f"{value} (RSS)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def header_lines(run: dict[str, Any]) -> list[str]:
    """Machine, versions, data, date and command of the run."""
    m, v, d = run["machine"], run["versions"], run["data"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, GPU: {m['gpu'] or 'none'}  ",
        f"Versions: {versions}  ",
        f"Data: {d['images']} JPEGs in {d['classes']} classes ({d['name']}); batches delivered to "
        f"{run['device']}; {run['date']}  ",
        f"Command: `{run['command']}`",
    ]


def backends_of(run: dict[str, Any]) -> list[str]:
    """Backends in the run, in plan order, synthetic excluded."""
    seen: list[str] = []
    for r in run["results"]:
        if r["backend"] not in seen and r["backend"] != "synthetic":
            seen.append(r["backend"])
    return seen


def throughput_table(run: dict[str, Any]) -> list[str]:
    """img/s per backend per workload (all cores), with CPU cost and peak PSS of train."""
    rows, skipped = [], []
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in run["results"]
                                             if r["section"] == "throughput")]
    for backend in backends_of(run):
        cells = {r["workload"]: r for r in ok_rows(run, "throughput", backend=backend)}
        if not cells:
            reason = next((r["reason"] for r in run["results"] if r["backend"] == backend), "")
            skipped.append(f"- `{backend}` skipped: {reason}")
            continue
        main = cells.get("train") or next(iter(cells.values()))
        m = main["measurement"]
        gpu = "" if m["peak_gpu_mb"] is None else f"{m['peak_gpu_mb']:.0f}"
        rows.append([f"`{backend}`", *(_rate(cells[w]) if w in cells else "-" for w in workloads),
                     f"{m['cpu_s_per_1000']:.2f}", _memory(m), gpu or "-"])
    first = [r for r in ok_rows(run, "throughput") if r["backend"] != "naive"] or ok_rows(run, "throughput")
    settings = (f"batch {first[0]['batch_size']}, {first[0]['workers']} workers/threads "
                "(naive: sequential)") if first else ""
    title = f"Throughput, images/s: median of the repeats (min-max); {settings}"
    header = ["backend", *workloads, "CPU s / 1000 img", "peak PSS MiB (process + workers)",
              "peak GPU MiB"]
    return [f"**{title}**", "", *_table(header, rows), "", *skipped]


def best_train(run: dict[str, Any], backend: str) -> dict[str, Any] | None:
    """The fastest train measurement of ``backend`` at the run's batch size, any worker count."""
    rows = [r for r in ok_rows(run, "throughput", backend=backend, workload="train")]
    if rows:
        size = rows[0]["batch_size"]
        rows += ok_rows(run, "scaling-workers", backend=backend, batch_size=size)
    return max(rows, key=lambda r: r["measurement"]["images_per_s"], default=None)


def _verdict(value: float, minimum: float, strict: bool) -> tuple[str, str]:
    """(target text, "met"/"missed") for ``value`` against ``minimum`` (``strict``: must exceed it)."""
    met = value > minimum if strict else value >= minimum
    return f"{'>' if strict else '>='} {minimum:g}", "met" if met else "missed"


def _e2e_efficiency(run: dict[str, Any], backend: str) -> float | None:
    """``backend``'s GoogLeNet img/s over synthetic data's, from the e2e section; None if absent."""
    rows = {r["backend"]: r["measurement"]["images_per_s"] for r in ok_rows(run, "e2e")}
    return rows[backend] / rows["synthetic"] if backend in rows and "synthetic" in rows else None


def gpu_target_rows(run: dict[str, Any]) -> list[list[str]]:
    """The issue's GPU targets, evaluated where dali-gpu results exist, else "not measured"."""
    gpu, torch_pil = best_train(run, "dali-gpu"), best_train(run, "torch-pil")
    rows = []
    if gpu is None:
        rows.append(["`dali-gpu` img/s", NOT_MEASURED, "-", f">= {TARGET_GPU_IMG_S:g}", ""])
    else:
        rate = gpu["measurement"]["images_per_s"]
        rows.append(["`dali-gpu` img/s", f"{rate:.0f} (w={gpu['workers']})", "-",
                     *_verdict(rate, TARGET_GPU_IMG_S, strict=False)])
    if gpu is None or torch_pil is None:
        rows.append(["`dali-gpu` / `torch-pil`", NOT_MEASURED, "-", f">= {TARGET_GPU_VS_TORCH:g}x", ""])
    else:
        a, b = gpu["measurement"], torch_pil["measurement"]
        ratio = a["images_per_s"] / b["images_per_s"]
        target, verdict = _verdict(ratio, TARGET_GPU_VS_TORCH, strict=False)
        rows.append(["`dali-gpu` / `torch-pil`",
                     f"{ratio:.2f}x (w={gpu['workers']} vs w={torch_pil['workers']})",
                     f"{b['cpu_s_per_1000'] / a['cpu_s_per_1000']:.2f}x", f"{target}x", verdict])
    efficiency = _e2e_efficiency(run, "dali-gpu")
    if efficiency is None:
        rows.append(["GoogLeNet e2e efficiency, `dali-gpu`", NOT_MEASURED, "-",
                     f">= {TARGET_E2E_EFFICIENCY:g}", ""])
    else:
        rows.append(["GoogLeNet e2e efficiency, `dali-gpu`", f"{efficiency:.3f}", "-",
                     *_verdict(efficiency, TARGET_E2E_EFFICIENCY, strict=False)])
    return rows


def targets_table(run: dict[str, Any]) -> list[str]:
    """The issue's targets (each backend at its best worker count), marked met or missed."""
    rows = []
    for top, base, minimum, strict in TARGETS_CPU:
        a, b = best_train(run, top), best_train(run, base)
        if a is None or b is None:
            continue
        ratio = a["measurement"]["images_per_s"] / b["measurement"]["images_per_s"]
        cost = b["measurement"]["cpu_s_per_1000"] / a["measurement"]["cpu_s_per_1000"]
        target, verdict = _verdict(ratio, minimum, strict)
        rows.append([f"`{top}` / `{base}`", f"{ratio:.2f}x (w={a['workers']} vs w={b['workers']})",
                     f"{cost:.2f}x", f"{target}x", verdict])
    rows += gpu_target_rows(run)
    header = ["train workload", "value (best worker counts)", "CPU-cost ratio", "target", ""]
    return ["**Targets (train workload, one run)**", "", *_table(header, rows)]


def scaling_tables(run: dict[str, Any]) -> list[str]:
    """Train img/s over workers and over batch sizes."""
    out = []
    for section, key, label in (("scaling-workers", "workers", "workers/threads"),
                                ("scaling-batch", "batch_size", "batch size")):
        rows = ok_rows(run, section)
        if not rows:
            continue
        base = ok_rows(run, "throughput", workload="train")
        values = sorted({r[key] for r in rows + base})
        table = []
        for backend in backends_of(run):
            cells = {r[key]: r for r in rows + base if r["backend"] == backend}
            if cells:
                table.append([f"`{backend}`", *(_rate(cells[v]) if v in cells else "-" for v in values)])
        out += [f"**Scaling over {label} (train, images/s)**", "",
                *_table(["backend", *map(str, values)], table), ""]
    return out


def efficiency_table(run: dict[str, Any], section: str) -> list[str]:
    """Overlap (simulated step) or end-to-end GoogLeNet: efficiency, data wait, GPU idle."""
    rows = ok_rows(run, section)
    if not rows:
        return []
    table = []
    for step in sorted({r["step_ms"] for r in rows}):
        group = [r for r in rows if r["step_ms"] == step]
        light = next((r for r in group if r["backend"] == "synthetic"), None)
        for r in group:
            m = r["measurement"]
            eff = m["images_per_s"] / light["measurement"]["images_per_s"] if light else float("nan")
            idle = f"{100 * r['gpu_idle_frac']:.1f}" if r.get("gpu_idle_frac") is not None else "-"
            table.append([f"{step:g} ms" if section == "overlap" else "GoogLeNet AMP", f"`{r['backend']}`",
                          _rate(r), f"{eff:.2f}", f"{100 * m['data_wait_frac']:.1f}", idle])
    if section == "overlap":
        title = ("Overlap with a simulated accelerator step (sleep, no CPU) per batch "
                 f"(train, batch {rows[0]['batch_size']}): efficiency = img/s / synthetic img/s")
    else:
        title = (f"End to end: GoogLeNet training (batch {rows[0]['batch_size']}, AMP) vs synthetic "
                 "on-device data; efficiency = img/s / synthetic img/s")
    header = ["step", "loader", "img/s", "efficiency", "data wait %", "GPU idle % (gaps between steps)"]
    return [f"**{title}**", "", *_table(header, table), ""]


def hw_decoder_table(run: dict[str, Any]) -> list[str]:
    """dali-gpu train img/s over hw_decoder_load."""
    rows = ok_rows(run, "hw-decoder")
    if not rows:
        return []
    table = [[f"{r['hw_decoder_load']:g}", _rate(r), f"{r['measurement']['cpu_s_per_1000']:.2f}"]
             for r in sorted(rows, key=lambda r: r["hw_decoder_load"])]
    return ["**dali-gpu over hw_decoder_load (train)**", "",
            *_table(["hw_decoder_load", "img/s", "CPU s / 1000 img"], table), ""]


def soak_lines(soak: dict[str, Any] | None) -> list[str]:
    """One line per device: RSS (and GPU memory) growth after epoch 2, against the growth target."""
    if not soak:
        return []
    out = [f"**Soak ({soak['epochs_run']} epochs of the DALI train graph, {soak['date']})**", ""]
    for device, summary in soak["summary"].items():
        gpu = (f", GPU memory {summary['gpu_growth_pct']:+.1f}%"
               if summary.get("gpu_growth_pct") is not None else "")
        verdict = "met" if summary["rss_growth_pct"] < GROWTH_TARGET_PCT else "missed"
        out.append(f"- {device}: RSS {summary['rss_epoch2_mb']:.0f} MiB after epoch 2 -> "
                   f"{summary['rss_last_mb']:.0f} MiB after epoch {summary['epochs']}: "
                   f"{summary['rss_growth_pct']:+.1f}%{gpu} (target < {GROWTH_TARGET_PCT:g}%: {verdict})")
    return [*out, ""]


def render_markdown(run: dict[str, Any], soak: dict[str, Any] | None = None) -> str:
    """All tables of a run as Markdown."""
    parts = [*header_lines(run), "", *throughput_table(run), "", *targets_table(run), "",
             *scaling_tables(run), *hw_decoder_table(run), *efficiency_table(run, "overlap"),
             *efficiency_table(run, "e2e"), *soak_lines(soak)]
    return "\n".join(parts).rstrip() + "\n"
