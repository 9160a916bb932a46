"""The e2e-sweep section: dali-gpu feeding the e2e step over DALI threads x hw_decoder_load x
prefetch depth; its plan, its settings reaching the graph, its records, table and summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench.backends import RunSpec
from bench.backends.dali import config_for
from bench.cli import RESULTS_DIR
from bench.measure import StepFigures
from bench.queries import summary
from bench.records import Record, Run, Settings, newest_run, read_run
from bench.report import render_markdown
from bench.sweep import SYNTHETIC, execute, plan_section, sweep_points
from dali_pipelines import scan_image_folder

GPU_SETTINGS = Settings(sections=("e2e-sweep",), backends=("dali-gpu", "torch-pil"), workloads=("train",),
                        device="gpu", batch_size=64, max_workers=16)


def test_the_first_points_vary_each_setting_once_and_threads_stay_below_the_cores() -> None:
    points = sweep_points(16)
    assert points[0] == (4, 1.0, 2) and len(points) == len(set(points)) == 12
    first = points[0]
    assert [sum(a != b for a, b in zip(p, first, strict=True)) for p in points[1:5]] == [1, 1, 1, 1]
    assert {p[0] for p in points[1:5]} == {4, 8, 16}  # threads, load and depth each moved
    assert {t for t, _, _ in sweep_points(6)} == {4} and {t for t, _, _ in sweep_points(2)} == {2}


def test_the_sweep_plans_its_own_synthetic_run_unless_e2e_has_one() -> None:
    jobs = plan_section(GPU_SETTINGS, "e2e-sweep")
    assert [j.backend for j in jobs] == [SYNTHETIC] + ["dali-gpu"] * 12
    assert all(j.spec.batch_size == 256 and j.warmup_batches == 5 for j in jobs)
    assert [(j.spec.workers, j.spec.hw_decoder_load, j.spec.prefetch) for j in jobs[1:]] == sweep_points(16)
    with_e2e = dataclasses.replace(GPU_SETTINGS, sections=("e2e", "e2e-sweep"))
    assert SYNTHETIC not in [j.backend for j in plan_section(with_e2e, "e2e-sweep")]
    assert plan_section(dataclasses.replace(GPU_SETTINGS, backends=("dali-ref",)), "e2e-sweep") == []


def test_prefetch_reaches_the_dali_graph() -> None:
    assert config_for(RunSpec(prefetch=3, workers=2), "cpu").prefetch_queue_depth == 3
    assert config_for(RunSpec(workers=2), "cpu").prefetch_queue_depth == 2  # the library's default
    with pytest.raises(ValueError, match="prefetch must be >= 1"):
        RunSpec(prefetch=0)


def test_sweep_records_round_trip_and_render_fastest_first(tmp_path: Path) -> None:
    """Records shaped as a GPU run writes them (a committed measurement, GPU figures set by hand)."""
    _, run = newest_run(RESULTS_DIR)
    base = run.results[0]

    def record(backend: str, rate: float, **fields) -> Record:
        m = dataclasses.replace(base.measurement, images_per_s=rate, images_per_s_min=rate,
                                images_per_s_max=rate)
        return dataclasses.replace(base, section="e2e-sweep", backend=backend, measurement=m, batch_size=256,
                                   consumer=StepFigures(gpu_idle_frac=0.01, gpu_step_ms=50.0), **fields)

    results = [record(SYNTHETIC, 5000.0),
               record("dali-gpu", 4000.0, workers=16, hw_decoder_load=0.65, prefetch=2),
               record("dali-gpu", 4750.0, workers=4, hw_decoder_load=1.0, prefetch=3)]
    gpu_run = dataclasses.replace(run, results=results)
    file = tmp_path / "run.json"
    file.write_text(json.dumps(gpu_run.to_dict()), encoding="utf-8")
    back = read_run(file)
    assert isinstance(back, Run) and back.results == results and back.results[2].prefetch == 3
    assert "prefetch" not in run.results[0].to_dict()  # unset: not written, committed files unchanged
    sweep = summary(back)["e2e_sweep"]
    assert [(p["threads"], p["prefetch"]) for p in sweep] == [(4, 3), (16, 2)]
    assert sweep[0]["efficiency"] == pytest.approx(0.95)
    markdown = render_markdown(back)
    assert "**End to end over DALI settings: `dali-gpu` feeding GoogLeNet** (batch 256" in markdown
    rows = markdown.split("| threads | hw_decoder_load | prefetch |")[1].splitlines()[2:4]
    assert rows[0].startswith("| 4 | 1 | 3 | 4750 | 0.950 |")
    assert rows[1].startswith("| 16 | 0.65 | 2 | 4000 | 0.800 |")


@pytest.mark.gpu
def test_a_sweep_point_feeds_the_step_with_its_settings(val_root: Path) -> None:
    settings = dataclasses.replace(GPU_SETTINGS, max_workers=4, warmup_s=0.2, repeat_s=0.3)
    data = scan_image_folder(val_root)
    light, point = (plan_section(settings, "e2e-sweep")[i] for i in (0, 2))
    for job in (light, point):
        small = dataclasses.replace(job, spec=dataclasses.replace(job.spec, batch_size=8))
        record = execute(small, data)
        assert record.status == "ok", record.reason
        assert record.consumer is not None and record.consumer.gpu_step_ms > 0
    assert (record.workers, record.hw_decoder_load, record.prefetch) == (4, 1.0, 3)
