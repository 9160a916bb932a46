"""The scale section: its trees, its phases over a tiny tree, and what its figures come to
(growth exponents, extrapolation, a non-zero rank's start-up) in the report, the summary, the
figure and the run file. The section at its real sizes is a benchmark (python -m bench --sections
scale), run in docs/scale.md, not here."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import pytest

from bench.cli import RESULTS_DIR
from bench.plots import FIGURES
from bench.publish import save_run
from bench.queries import at_size, growth_exponents, rank_startup, scale_rows, summary
from bench.records import Record, Run, RunData, Settings, new_run, newest_run
from bench.report import render_markdown
from bench.scale import IMAGENET_TRAIN, IMAGENET_VAL, ScaleFigures, build_tree, measure_scale
from bench.sweep import Job, Progress, plan
from dali_pipelines import scan_image_folder, verify_data


def test_a_tree_is_hard_links_to_the_runs_images_in_equal_classes(train_root: Path, tmp_path: Path) -> None:
    sources = scan_image_folder(train_root)
    root, classes = build_tree(250, sources, tmp_path)
    tree = scan_image_folder(root)
    assert (len(tree), classes, len(tree.classes)) == (250, 25, 25)
    assert {tree.labels.count(c) for c in range(classes)} == {10}
    assert {os.stat(f).st_ino for f in tree.files} == {os.stat(f).st_ino for f in sources.files}
    assert verify_data(tree, workers=1).ok


def test_the_phases_measure_a_tiny_tree_and_its_bucket_listing(train_root: Path, s3_server) -> None:
    """Every phase of one tree with its listing from the S3 server, in this process: a fresh
    interpreter per phase (as the benchmark runs them) would cost an import of torch and DALI each."""
    sources = scan_image_folder(train_root)
    f = measure_scale(120, sources, batch_size=4, threads=1, device="cpu", timeout_s=120, fresh=False,
                      server=s3_server)
    assert (f.files, f.classes) == (120, 12)
    assert min(f.scan_s, f.cold_verify_s, f.warm_verify_s, f.loader_s, f.warm_loader_s) > 0
    assert min(f.cache_mb, f.list_mb, f.scan_peak_mb, f.cold_verify_peak_mb, f.loader_peak_mb) >= 0
    assert f.s3_list_s is not None and f.s3_list_s > 0 and f.s3_list_peak_mb is not None


def _figures(files: int) -> ScaleFigures:
    """Figures that grow exactly as n (seconds), n^0.5 (memory) or stay flat (the loader's build)."""
    n = files / 1e4
    return ScaleFigures(files=files, classes=1000, tree_s=n, scan_s=0.02 * n, scan_peak_mb=1.0 * n,
                        cold_verify_s=1.5 * n, cold_verify_peak_mb=3.0 * n ** 0.5, warm_verify_s=0.05 * n,
                        warm_verify_peak_mb=0.5 * n ** 0.5, cache_mb=0.7 * n, loader_s=2.0,
                        loader_peak_mb=70.0, warm_loader_s=1.5, warm_loader_peak_mb=70.0, apply_s=0.001 * n,
                        list_mb=0.3 * n, **({"s3_list_s": 0.4 * n, "s3_list_peak_mb": 20.0 * n}
                                            if files <= 100_000 else {}))


@pytest.fixture
def scale_run() -> Run:
    settings = Settings(sections=("scale",), backends=("dali-cpu",), workloads=("train",), device="cpu",
                        batch_size=64, max_workers=2, scale_files=(10_000, 100_000, 1_000_000))
    run = new_run(["--sections", "scale"], settings, RunData(name="t", images=8, classes=2), {})
    jobs = plan(settings)["scale"]
    assert [job.scale_files for job in jobs] == [10_000, 100_000, 1_000_000]
    base = dict(status="ok", reason="", measurement=None, consumer=None, load_avg_1m=0.5)
    run.results = [Record(**job.to_dict(), **base, scale=_figures(job.scale_files)) for job in jobs]
    return run


def test_growth_and_extrapolation_follow_the_power_law(scale_run: Run) -> None:
    rows = scale_rows(scale_run)
    exponents = growth_exponents(rows)
    linear = pytest.approx(1.0)
    assert exponents["cold_verify_s"] == {"10000-100000": linear, "100000-1000000": linear}
    assert exponents["warm_verify_peak_mb"]["100000-1000000"] == pytest.approx(0.5)
    assert exponents["loader_s"]["100000-1000000"] == pytest.approx(0.0)
    assert at_size(rows, "warm_verify_s", 10_000_000) == pytest.approx(50.0)  # beyond: the two largest
    assert at_size(rows, "cold_verify_peak_mb", 10_000_000) == pytest.approx(3.0 * 1000 ** 0.5)
    assert at_size(rows, "scan_s", 50_000) == pytest.approx(0.1)  # between 10k and 100k
    assert exponents["s3_list_s"] == {"10000-100000": linear}  # listed from the bucket up to 100k
    assert at_size(rows, "s3_list_peak_mb", IMAGENET_TRAIN) == pytest.approx(20.0 * IMAGENET_TRAIN / 1e4)
    startup = rank_startup(rows)
    assert startup is not None and (startup.train_files, startup.val_files) == (IMAGENET_TRAIN, IMAGENET_VAL)
    both = (IMAGENET_TRAIN + IMAGENET_VAL) / 1e4
    assert startup.scan_s == pytest.approx(0.02 * both)
    assert startup.wait_s == pytest.approx(0.05 * both + 2 * 0.001 * both)
    assert startup.loaders_s == pytest.approx(3.0)  # flat: 1.5 s a loader
    assert startup.total_s == pytest.approx(startup.scan_s + startup.wait_s + startup.loaders_s)


def test_report_summary_figure_and_run_file_carry_the_section(scale_run: Run, tmp_path: Path) -> None:
    markdown = render_markdown(scale_run)
    assert "**Start-up at scale**" in markdown
    assert "| 1,000,000 | 2.00 | 150.0 (+30) | 5.00 (+5) | 70.0 | 2.00 (+70) | 1.50 (+70) | 0.10 | - |" \
        in markdown
    assert "| 10,000 | 0.02 | 1.5 (+3) | 0.05 (+0) | 0.7 | 2.00 (+70) | 1.50 (+70) | 0.00 | 0.40 (+20) |" \
        in markdown
    assert "| cold_verify_s | 1.00 | 1.00 |" in markdown and "10,000,000 files" in markdown
    startup = rank_startup(scale_run_rows := scale_rows(scale_run))
    assert startup is not None and f"warm cache, imports aside: {startup.total_s:.1f} s" in markdown
    sums = summary(scale_run)["scale"]
    assert sums["files"] == [10_000, 100_000, 1_000_000]
    assert sums["imagenet_nonzero_rank_startup_s"] == pytest.approx(startup.total_s)
    imagenet = sums["extrapolated"][str(IMAGENET_TRAIN)]
    assert imagenet["warm_verify_s"] == pytest.approx(0.05 * IMAGENET_TRAIN / 1e4)
    figure = FIGURES["scale"](scale_run)
    assert figure is not None and all(ax.get_legend() is not None for ax in figure.axes)
    file = tmp_path / "run.json"
    file.write_text(json.dumps(scale_run.to_dict()))
    back = Run.from_dict(json.loads(file.read_text()))
    assert back.settings.scale_files == (10_000, 100_000, 1_000_000)
    assert scale_rows(back) == scale_run_rows
    soak = dataclasses.replace(scale_run.settings, sections=("soak",))
    plain = dataclasses.replace(scale_run, settings=soak, results=[])
    assert "scale_files" not in plain.to_dict()["settings"] and "scale" not in summary(plain)
    assert "Start-up at scale" not in render_markdown(plain) and FIGURES["scale"](plain) is None


def test_a_scale_job_says_its_size_and_its_time(scale_run: Run) -> None:
    job = next(iter(plan(scale_run.settings)["scale"]))
    assert isinstance(job, Job) and job.label().startswith("scale: 10000 files")
    line = io.StringIO()
    Progress(1, line)(job, scale_run.results[0])
    assert "verify 1.5 s cold (+3 MiB)" in line.getvalue()
    assert "bucket listing 0.40 s (+20 MiB)" in line.getvalue()
    assert job.timeout_s(600.0) == 600.0
    big = dataclasses.replace(job, scale_files=10_000_000)
    assert big.timeout_s(600.0) > 600.0 and big.minimum_s() > job.minimum_s()


def test_the_committed_scale_run_writes_back_byte_for_byte(tmp_path: Path) -> None:
    """The scale run kept in its own folder (the other sections' runs stay the newest in
    bench/results) reads back into the same JSON, CSV, Markdown and summary."""
    path, run = newest_run(RESULTS_DIR / "scale")
    assert [r.files for r in scale_rows(run)] == [10_000, 100_000, 1_000_000]
    save_run(run, tmp_path)
    for suffix in (".json", ".csv"):
        written = (tmp_path / path.name).with_suffix(suffix)
        assert written.read_bytes() == path.with_suffix(suffix).read_bytes(), suffix
    assert render_markdown(run) == path.with_suffix(".md").read_text(encoding="utf-8")
    expected = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    assert {**summary(run, path), "file": None} == {**expected, "file": None}
    assert newest_run(RESULTS_DIR)[1].results[0].section != "scale"
