"""A real small run end to end, in its own process as a user starts it: every section that runs
without a GPU, every output file, the JSON summary, the figures, the progress lines and the
bad-file warning; and a failed job recorded without losing the ones before it."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import pytest
import torch

from bench.backends import BACKENDS as BACKENDS_REGISTRY
from bench.check.claims import verdicts
from bench.cli import get_args_parser, main, resolve
from bench.measure import StepFigures
from bench.plots import COLOURS, FIGURES
from bench.publish import saver
from bench.queries import e2e_figures, summary
from bench.records import Record, Run, RunData, Settings, new_run
from bench.report import render_markdown
from bench.sweep import execute, plan, run_sweep
from dali_pipelines import scan_image_folder

SECTIONS = ["throughput", "scaling", "overlap", "soak", "shards"]
BACKENDS = ["dali-cpu", "dali-ref"]
TIMING = {"warmup_s": 0.1, "repeat_s": 0.2, "repeats": 3, "soak_epochs": 2}
# --quick: one overlap step length and one batch a repeat at least; the timing flags cut further.
RUN_ARGS = ["--quick", "--sections", ",".join(SECTIONS), "--backends", ",".join(BACKENDS),
            "--workloads", "train", "--batch-size", "8", "--warmup-s", str(TIMING["warmup_s"]),
            "--repeat-s", str(TIMING["repeat_s"]), "--soak-epochs", str(TIMING["soak_epochs"]),
            "--on-bad-file", "skip"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, train_root: Path) -> tuple[Path, dict, str]:
    """(results folder, run JSON, stderr) of one run over the train set plus one truncated JPEG."""
    base = tmp_path_factory.mktemp("bench-run")
    data = base / "data"
    shutil.copytree(train_root, data)
    (data / "cat" / "cut.jpg").write_bytes(next((data / "cat").iterdir()).read_bytes()[:1500])
    out = base / "results"
    (base / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(base / "tmp")}  # the shards conversion goes there
    command = [sys.executable, "-m", "bench", "--data", str(data), "--out", str(out), *RUN_ARGS]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1],
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    (json_file,) = out.glob("*.json")
    return out, json.loads(json_file.read_text()), proc.stderr


@pytest.mark.slow
def test_every_output_file_is_written(small_run) -> None:
    out, run, _ = small_run
    stem = run["stem"]
    assert stem.startswith("cpu-") or torch.cuda.is_available()
    expected = {f"{stem}.{ext}" for ext in ("json", "csv", "md")}
    expected |= {f"{stem}-{kind}.png" for kind in ("throughput", "scaling", "efficiency", "soak")}
    assert {p.name for p in out.iterdir()} == expected  # no empty figure (no GPU section ran)
    assert all((out / name).stat().st_size > 0 for name in expected)
    rows = list(csv.DictReader((out / f"{stem}.csv").open()))
    assert len(rows) == len(run["results"]) and {r["section"] for r in rows} == set(SECTIONS)


@pytest.mark.slow
def test_records_honour_the_requested_timing(small_run) -> None:
    _, run, _ = small_run
    assert run["data"]["images"] == 72  # the truncated file was left out
    records = run["results"]
    assert all(r["status"] == "ok" for r in records), [r["reason"] for r in records]
    for r in records:
        m = r["measurement"]
        if r["section"] == "soak":  # full passes: one epoch per repeat
            assert r["passes"] and len(m["repeat_s"]) == TIMING["soak_epochs"]
            assert len(set(m["repeat_images"])) == 1 and len(m["repeat_pss_mb"]) == TIMING["soak_epochs"]
            continue
        assert len(m["repeat_s"]) == TIMING["repeats"]
        assert all(s >= TIMING["repeat_s"] for s in m["repeat_s"])  # a contract, not a speed
        assert all(n >= r["repeat_images"] for n in m["repeat_images"])
        assert m["warmup_s"] >= TIMING["warmup_s"]
    assert {r["source"] for r in records if r["section"] == "shards"} == {"files", "shards"}
    assert [(r["backend"], r["workers"]) for r in records if r["section"] == "scaling"] == [("dali-cpu", 1)]


@pytest.mark.slow
def test_progress_is_one_line_per_job_and_the_skip_warning_appears_once(small_run) -> None:
    _, run, stderr = small_run
    assert "\r" not in stderr  # a log file gets lines, not a redrawn bar
    assert sum("skipping 1 of 73 files" in line for line in stderr.splitlines()) == 1
    progress = [line for line in stderr.splitlines() if line.startswith("[")]
    total = len(run["results"])
    assert len(progress) == total and re.match(rf"\[ *1/{total} \d+:\d\d\] throughput: ", progress[0])


@pytest.mark.slow
def test_report_json_sums_up_the_newest_run(small_run, capsys) -> None:
    out, run, _ = small_run
    capsys.readouterr()
    assert main(["report", "--json", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"device", "cpus", "throughput", "e2e_efficiency", "command", "date"} <= set(summary)
    assert summary["device"] == "cpu" and summary["cpus"] == os.cpu_count()
    assert summary["date"] == run["date"] and "--sections" in summary["command"]
    rates = {r["backend"]: r["measurement"]["images_per_s"] for r in run["results"]
             if r["section"] == "throughput"}
    assert summary["throughput"] == {b: {"train": rates[b]} for b in BACKENDS}
    assert summary["ratio_to_dali_ref"] == {"dali-cpu": {"train": rates["dali-cpu"] / rates["dali-ref"]}}
    assert summary["e2e_efficiency"] == {} and summary["errors"] == 0
    assert summary["train_aug_vs_train"] == {} and summary["skipped"] == {}  # train only here
    assert set(summary["soak_growth_pct"]) == {"dali-cpu"} and set(summary["shards_vs_files"]) == {"train"}


@pytest.mark.slow
def test_report_prints_every_table(small_run, capsys) -> None:
    out, _, _ = small_run
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    for text in ("| `dali-ref` |", "against NVIDIA's example graph", "**Scaling over workers",
                 "**Overlap with a simulated accelerator step", "**Soak", "**Shards vs loose files"):
        assert text in table


@pytest.mark.slow
def test_figures_have_legends_and_one_colour_per_backend(small_run) -> None:
    run = Run.from_dict(small_run[1])
    seen: dict[str, set[str]] = {}
    for make in FIGURES.values():
        fig = make(run)
        if fig is None:
            continue
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None, ax.get_title()
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
                rgb = handle.get_facecolor() if hasattr(handle, "get_height") else handle.get_color()
                seen.setdefault(text.get_text(), set()).add(matplotlib.colors.to_hex(rgb))
    assert set(seen) == set(BACKENDS)
    assert all(colours == {COLOURS[b]} for b, colours in seen.items()), seen
    throughput = FIGURES["throughput"](run)
    assert [ax.get_title() for ax in throughput.axes] == ["train"]  # only what ran
    labels = [t.get_text() for t in throughput.axes[0].texts]
    assert "1.00x" in labels  # dali-ref against itself; every bar carries its ratio


@pytest.mark.slow
def test_a_failed_job_is_recorded_and_the_run_file_kept_current(train_root: Path, tmp_path: Path) -> None:
    data = scan_image_folder(train_root)
    settings = Settings(sections=("throughput",), backends=("dali-cpu",), workloads=("train",), device="cpu",
                        batch_size=8, max_workers=1, warmup_s=0.0, repeat_s=0.0)
    ok, = plan(settings)["throughput"]
    too_big = dataclasses.replace(ok, spec=dataclasses.replace(ok.spec, batch_size=4096))  # no full batch
    run = new_run(["--test"], settings, RunData(name="t", images=72, classes=8), {})
    save = saver(run, tmp_path)
    on_disk = []

    def save_and_read(record: Record) -> None:
        save(record)
        on_disk.append(json.loads((tmp_path / f"{run.stem}.json").read_text())["results"])

    run_sweep({"throughput": [ok, too_big]}, {"files": data}, 60.0, save_and_read)
    assert [len(results) for results in on_disk] == [1, 2]  # written after every job
    first, second = on_disk[-1]
    assert first["status"] == "ok" and second["status"] == "error"
    assert "batch_size=4096" in second["reason"]



def test_train_aug_beside_train_with_its_ratio_and_a_skipped_backend(val_root: Path, tmp_path: Path) -> None:
    """A small real throughput run of naive on train and train-aug, and tfdata on train-aug
    (skipped: no process, no TensorFlow): the table, the summary and the figure show both
    workloads, the ratio, and the skipped backend with its reason."""
    data = scan_image_folder(val_root)
    settings = Settings(sections=("throughput",), backends=("naive",), workloads=("train", "train-aug"),
                        device="cpu", batch_size=8, max_workers=1, warmup_s=0.0, repeat_s=0.1)
    jobs = plan(settings)["throughput"]
    jobs += plan(dataclasses.replace(settings, backends=("tfdata",), workloads=("train-aug",)))["throughput"]
    run = new_run(["--test"], settings, RunData(name="t", images=24, classes=8), {})
    run_sweep({"throughput": jobs}, {"files": data}, 120.0, saver(run, tmp_path))
    assert [r.status for r in run.results] == ["ok", "ok", "skipped"]
    rates = {r.workload: r.measurement.images_per_s for r in run.results[:2]}
    ratio = rates["train-aug"] / rates["train"]
    sums = summary(run)
    assert sums["throughput"] == {"naive": rates}
    assert sums["train_aug_vs_train"] == {"naive": pytest.approx(ratio)} and sums["errors"] == 0
    assert sums["skipped"] == {"tfdata": {"train-aug": BACKENDS_REGISTRY["tfdata"].skip_reason("train-aug")}}
    markdown = render_markdown(run)
    assert "| backend | train | train-aug | train-aug / train | CPU s / 1000 img (train / train-aug) |" \
        in markdown
    assert f"| {ratio:.2f}x |" in markdown.split("| `naive` |")[1].splitlines()[0]
    assert "| `tfdata` | - | skipped | - | - / - | - | - |" in markdown
    assert "- `tfdata` train-aug: skipped, TensorFlow has no RandAugment operator" in markdown
    assert "**Failed jobs**" not in markdown
    figure = FIGURES["throughput"](run)
    assert [ax.get_title() for ax in figure.axes] == ["train", "train-aug (tfdata: skipped)"]


def test_e2e_model_reaches_every_e2e_job() -> None:
    """--e2e-model resnet50 is in the run's settings and every e2e and e2e-sweep job trains it (its
    record names it); the other sections' jobs train nothing."""
    args = get_args_parser().parse_args(["--device", "cpu", "--e2e-model", "resnet50"])
    assert resolve(args)[0].e2e_model == "resnet50"
    settings = Settings(sections=("e2e", "e2e-sweep", "throughput"), backends=("dali-gpu", "dali-ref"),
                        workloads=("train",), device="gpu", batch_size=8, max_workers=2, e2e_model="resnet50")
    jobs = plan(settings)
    assert [(job.backend, job.model) for job in jobs["e2e"]] == [
        ("synthetic", "resnet50"), ("dali-gpu", "resnet50"), ("dali-ref", "resnet50")]
    assert {job.model for job in jobs["e2e-sweep"]} == {"resnet50"}
    assert {job.model for job in jobs["throughput"]} == {None}
    assert jobs["e2e"][1].to_dict()["model"] == "resnet50" and "resnet50" in jobs["e2e"][1].label()


@pytest.mark.gpu
def test_e2e_records_gpu_idle_and_step_time_for_every_gpu_loader(val_root: Path) -> None:
    """GoogLeNet fed by synthetic data and by each GPU loader, and with train-aug by dali-gpu and
    the DataLoader (batch 8 here: 24 images)."""
    settings = Settings(sections=("e2e",), backends=("torch-tv", "dali-gpu", "dali-ref", "torchvision-gpu"),
                        workloads=("train", "train-aug"), device="gpu", batch_size=8, max_workers=2,
                        warmup_s=0.2, repeat_s=0.3)
    data = scan_image_folder(val_root)
    jobs = plan(settings)["e2e"]
    assert [(job.backend, job.spec.workload) for job in jobs] == [
        ("synthetic", "train"), ("dali-gpu", "train"), ("dali-ref", "train"), ("torchvision-gpu", "train"),
        ("dali-gpu", "train-aug"), ("torch-tv", "train-aug")]
    for job in jobs:
        record = execute(dataclasses.replace(job, spec=dataclasses.replace(job.spec, batch_size=8)), data)
        assert record.status == "ok", record.reason
        idle, step_ms = record.consumer.gpu_idle_frac, record.consumer.gpu_step_ms
        assert 0.0 <= idle < 1.0 and step_ms > 0.0  # no clamp: < 0 or 1.0 would be a bug
        assert record.measurement.peak_gpu_mb > 0
    resnet = plan(dataclasses.replace(settings, e2e_model="resnet50"))["e2e"]  # --e2e-model resnet50
    assert {job.model for job in resnet} == {"resnet50"}
    fed = resnet[1]  # dali-gpu, train
    record = execute(dataclasses.replace(fed, spec=dataclasses.replace(fed.spec, batch_size=8)), data)
    assert record.status == "ok" and record.consumer.gpu_step_ms > 0, record.reason


@pytest.mark.slow
def test_gpu_sections_render_from_their_records(small_run) -> None:
    """The e2e and hw-decoder tables, summary and figures, from records shaped as a GPU run
    writes them (the measurements copied from this run's, the GPU figures set by hand)."""
    run = Run.from_dict(small_run[1])
    base = next(r for r in run.results if r.section == "throughput" and r.backend == "dali-cpu")

    def record(section: str, backend: str, rate: float, **fields) -> Record:
        m = dataclasses.replace(base.measurement, images_per_s=rate, images_per_s_min=rate,
                                images_per_s_max=rate)
        return dataclasses.replace(base, section=section, backend=backend, measurement=m, **fields)

    gpu_run = dataclasses.replace(run, settings=dataclasses.replace(run.settings, device="gpu"), results=[
        record("e2e", "synthetic", 5000.0, consumer=StepFigures(gpu_idle_frac=0.01, gpu_step_ms=50.0)),
        record("e2e", "dali-gpu", 4500.0, consumer=StepFigures(gpu_idle_frac=0.02, gpu_step_ms=55.0)),
        record("e2e", "dali-gpu", 4600.0, workload="train-aug",
               consumer=StepFigures(gpu_idle_frac=0.0, gpu_step_ms=50.0)),
        record("hw-decoder", "dali-gpu", 15000.0, hw_decoder_load=1.0),
        record("hw-decoder", "dali-gpu", 12000.0, hw_decoder_load=0.0)])
    figures = e2e_figures(gpu_run)["dali-gpu"]
    assert figures.efficiency == pytest.approx(0.9) and figures.step_vs_synthetic == pytest.approx(1.1)
    assert summary(gpu_run)["e2e_efficiency"] == {"dali-gpu": pytest.approx(0.9),
                                                  "dali-gpu+train-aug": pytest.approx(0.92)}
    markdown = render_markdown(gpu_run)
    assert "| `dali-gpu` | 4500 | 0.900 |" in markdown and "**`dali-gpu` over hw_decoder_load**" in markdown
    assert "| `dali-gpu+train-aug` | 4600 | 0.920 |" in markdown
    (panel,) = FIGURES["efficiency"](gpu_run).axes
    texts, handles = panel.get_legend().get_texts(), panel.get_legend().legend_handles
    legend = {t.get_text(): h for t, h in zip(texts, handles, strict=True)}
    assert set(legend) == {"dali-gpu", "dali-gpu+train-aug"}  # same colour, the aug bar hatched
    assert legend["dali-gpu"].get_facecolor() == legend["dali-gpu+train-aug"].get_facecolor()
    assert not legend["dali-gpu"].get_hatch() and legend["dali-gpu+train-aug"].get_hatch() == "//"
    made = {kind for kind, make in FIGURES.items() if make(gpu_run) is not None}
    assert made == {"efficiency", "hw-decoder"}
    assert "**End to end: GoogLeNet training steps**" in markdown
    assert "e2e_model" not in run.settings.to_dict()  # GoogLeNet's runs: their files as before


@pytest.mark.slow
def test_e2e_of_two_models_in_one_run(small_run) -> None:
    """A check's run: GoogLeNet's e2e records (written before records named a model) beside
    ResNet-50's; each model gets its table, efficiency panel and summary figures, and its target."""
    run = Run.from_dict(small_run[1])
    base = next(r for r in run.results if r.section == "throughput" and r.backend == "dali-cpu")

    def e2e(backend: str, rate: float, model: str | None) -> Record:
        m = dataclasses.replace(base.measurement, images_per_s=rate, images_per_s_min=rate,
                                images_per_s_max=rate)
        return dataclasses.replace(base, section="e2e", backend=backend, measurement=m, model=model,
                                   consumer=StepFigures(gpu_idle_frac=0.01, gpu_step_ms=50.0))

    googlenet = [e2e("synthetic", 5000.0, None), e2e("dali-gpu", 4500.0, None)]
    resnet = [e2e("synthetic", 2000.0, "resnet50"), e2e("dali-gpu", 1960.0, "resnet50")]
    both = dataclasses.replace(run, settings=dataclasses.replace(run.settings, device="gpu"),
                               results=[*googlenet, *resnet])
    assert Record.from_dict(resnet[0].to_dict()).model == "resnet50" and "model" not in googlenet[0].to_dict()
    markdown = render_markdown(both)
    assert (markdown.index("**End to end: GoogLeNet training steps**")
            < markdown.index("**End to end: ResNet-50 training steps**"))
    assert "| `dali-gpu` | 1960 | 0.980 |" in markdown
    assert [ax.get_title() for ax in FIGURES["efficiency"](both).axes] == [
        "GoogLeNet training step", "ResNet-50 training step"]
    figures = summary(both)
    assert figures["e2e_efficiency"] == {"dali-gpu": pytest.approx(0.9)}  # the run's --e2e-model's
    assert figures["e2e_by_model"]["resnet50"]["efficiency"] == {"dali-gpu": pytest.approx(0.98)}
    claims = {v["claim"]: v["verdict"] for v in verdicts(figures)}
    assert claims["ResNet-50 e2e efficiency fed by dali-gpu"] == "met"
    assert claims["GoogLeNet e2e efficiency fed by dali-gpu"] == "below"
    assert "e2e_by_model" not in summary(run)  # a run without e2e records: its summary as before
