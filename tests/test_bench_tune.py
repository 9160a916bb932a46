"""The bench's tune section: its job and cost estimate in the plan, and a real (tiny) climb, grid
and rounds in turn on the sample photos rendered by the report, the summary and the run file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.queries import summary, tune_figures
from bench.records import Record, Run, RunData, Settings, new_run
from bench.report import render_markdown
from bench.sweep import describe_plan, plan
from bench.tuning import HILL_S, ROUNDS, base_config, run_tune_section, section_space
from dali_pipelines import scan_image_folder
from dali_pipelines.config import default_num_threads
from dali_pipelines.tune import MeasureSpec, pipeline_space

TINY = MeasureSpec(warmup_s=0.0, warmup_batches=1, repeat_s=0.0, repeat_batches=1, repeats=1)


def _settings(**changes: object) -> Settings:
    fields = {"sections": ("tune",), "backends": ("dali-cpu",), "workloads": ("train",), "device": "cpu",
              "batch_size": 8, "max_workers": 2, **changes}
    return Settings(**fields)


def test_the_plan_holds_one_tune_job_from_the_defaults_with_its_cost() -> None:
    (job,) = plan(_settings())["tune"]
    assert (job.backend, job.spec.workload) == ("dali-cpu", "train")
    assert job.spec.workers == default_num_threads("cpu")
    measure = job.measure_spec()
    assert measure == MeasureSpec()  # the tuner's own measurement; --quick halves it
    assert plan(_settings(quick=True))["tune"][0].measure_spec() == MeasureSpec(warmup_s=0.5, repeat_s=0.5)
    point = measure.warmup_s + measure.repeats * measure.repeat_s
    size = section_space(base_config(job.spec)).size
    assert job.minimum_s() == HILL_S + point * size + point * 3 * ROUNDS
    assert "1 jobs (tune 1); at least" in describe_plan({"tune": [job]})
    assert plan(_settings(backends=("dali-ref",))) == {}  # the section tunes this project's loader only


def test_a_real_tiny_section_is_reported_beside_the_defaults_and_the_grid(train_root: Path,
                                                                        tmp_path: Path) -> None:
    (job,) = plan(_settings(batch_size=4))["tune"]
    base = base_config(job.spec)
    space = pipeline_space(base, threads=[1, 2], prefetch=[2])
    figures = run_tune_section(scan_image_folder(train_root), job.spec, TINY, space=space, hill_s=5, rounds=2)
    assert figures.space == {"num_threads": [1, 2], "prefetch_queue_depth": [2]}
    assert figures.points["defaults"] == {"num_threads": 2, "prefetch_queue_depth": 2}
    assert figures.points["grid best"] == figures.grid["best"] and figures.grid["complete"]
    assert all(len(rates) == 2 and min(rates) > 0 for rates in figures.rates.values())

    record = Record(**job.to_dict(), status="ok", reason="", measurement=None, consumer=None,
                    load_avg_1m=0.0, tune=figures)
    data = RunData(name=str(train_root), images=72, classes=8)
    run = new_run(["--sections", "tune"], _settings(batch_size=4), data, {})
    run.results.append(record)
    file = tmp_path / "run.json"
    file.write_text(json.dumps(run.to_dict()), encoding="utf-8")
    assert Run.from_dict(json.loads(file.read_text())).results == [record]

    found = tune_figures(run)["dali-cpu"]
    assert found.tuned_vs_defaults == found.images_per_s["tuned"] / found.images_per_s["defaults"]
    assert found.grid.points == found.grid.space == 2 and found.rounds == 2
    markdown = render_markdown(run)
    assert "**Tuning the loader** (`dali-cpu`, train, batch 4, the loader alone)" in markdown
    assert "| defaults | num_threads 2, prefetch_queue_depth 2 |" in markdown
    assert "grid: 2 of 2 points" in markdown and "| 1.00x |" in markdown
    assert summary(run)["tune"]["dali-cpu"]["tuned_vs_grid_best"] == found.tuned_vs_grid_best
