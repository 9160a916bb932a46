"""``python -m bench check``: the plan fits the budget (shrinking before dropping), and a real
small check on the CPU runs end to end: every step has its result, the GPU steps are planned
and skipped with the reason, the five files exist and parse. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from bench.backends import PEERS
from bench.check.execute import pytest_outcome, train_figures
from bench.check.outputs import FILES
from bench.check.plan import LEVELS, MIN_SWEEP_POINTS, Setup, describe, fit
from bench.check.steps import CLAIM_BACKENDS, STEPS
from bench.cli import main
from bench.sweep import SYNTHETIC
from train.metrics import EPOCH_FIELDS, _CsvFile

H200 = Setup(device="gpu", gpu_visible=True, workers=16, images=8000, train_images=6400, make_sample=True,
             has_val=True, tests_skip="", budget_s=480.0, spent_s=5.0)
GPU_STEPS = ("hw-decoder", "e2e", "e2e-sweep", "train")
NO_GPU = "needs a CUDA GPU and none is visible here"


def _points(plan) -> int:
    return sum(j.backend != SYNTHETIC for j in plan.by_name("e2e-sweep").jobs)


def test_the_default_plan_for_a_gpu_machine_fits_and_holds_every_claim() -> None:
    plan = fit(H200)
    assert plan.fits() and [p.step.name for p in plan.steps] == [s.name for s in STEPS]
    throughput = plan.by_name("throughput")
    assert {(j.backend, j.spec.workload) for j in throughput.jobs} == {
        (b, w) for b in CLAIM_BACKENDS for w in ("train", "train-aug", "eval")}
    assert all(j.spec.workers == 16 and j.spec.batch_size == 256 for j in throughput.jobs)
    e2e = plan.by_name("e2e")
    assert [j.backend for j in e2e.jobs] == [SYNTHETIC, "dali-gpu", "dali-ref"]
    assert _points(plan) >= MIN_SWEEP_POINTS and plan.by_name("train").runs and plan.by_name("tests").runs
    peers = plan.by_name("peers")  # each registered peer runs, or is left out with its reason
    assert {j.backend for j in peers.jobs} | set(peers.left_out) == set(PEERS)
    assert all(peers.left_out.values())
    tune = plan.by_name("tune")
    assert tune.runs and [j.backend for j in tune.jobs] == ["dali-gpu"]
    assert {j.model for j in e2e.jobs} == {"googlenet"}
    resnet = plan.by_name("e2e-resnet50")  # the e2e section again, training ResNet-50
    assert [(j.section, j.backend, j.model) for j in resnet.jobs] == [
        ("e2e", SYNTHETIC, "resnet50"), ("e2e", "dali-gpu", "resnet50")]
    assert plan.settings.sections.count("e2e") == 1
    text = "\n".join(describe(plan))
    assert "budget 480 s" in text and all(f"  {s.name} " in text for s in STEPS)


def test_a_smaller_budget_shrinks_timing_and_sweep_points_before_it_drops_steps() -> None:
    plans = [fit(Setup(**{**H200.__dict__, "budget_s": float(budget)})) for budget in (480, 300, 200, 90)]
    assert all(plan.fits() for plan in plans)
    levels = [LEVELS.index(plan.level) for plan in plans]
    assert levels == sorted(levels) and levels[-1] == len(LEVELS) - 1
    points = [_points(plan) for plan in plans]
    assert points == sorted(points, reverse=True)
    dropped = [p.step.name for p in plans[-1].steps if p.reason.startswith("does not fit --budget 90 s")]
    assert "e2e-sweep" in dropped and plans[-1].by_name("throughput").runs  # the claims go last
    assert plans[-1].by_name("sample").runs


def test_the_plan_for_a_gpu_machine_can_be_seen_anywhere(tmp_path: Path, capsys) -> None:
    argv = ["check", "--plan-only", "--device", "gpu", "--workers", "16", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan: gpu, 16 workers, batch 256;") and "15 jobs: dali-gpu, dali-ref" in out
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_small_check_on_the_cpu_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bench", "check", "--device", "cpu", "--budget", "20", "--skip-tests",
               "--sample-images", "32", "--backends", "dali-ref", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
                          env={**os.environ, "TMPDIR": str(tmp_path)}, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    check = json.loads((out / "check.json").read_text())
    steps = {s["name"]: s for s in check["steps"]}
    fits = check["estimate_s"] + check["spent_before_plan_s"] + check["final_s"] <= 20
    # Under load the start-up alone can spend the budget: then only the sample (never dropped) is left.
    assert fits or all(s["status"] == "skipped" for name, s in steps.items() if name != "sample")
    assert list(steps) == [s.name for s in STEPS]
    reason = "needs --device gpu" if torch.cuda.is_available() else NO_GPU
    assert all(steps[name]["status"] == "skipped" and steps[name]["reason"] == reason for name in GPU_STEPS)
    assert steps["tests"]["reason"] == "--skip-tests" and steps["sample"]["status"] == "ok"
    assert steps["sample"]["details"]["images"] == 24  # the train/ split of 32 photos
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["failed"] == []
    throughput = steps["throughput"]
    if throughput["status"] == "ok":  # a loaded machine may spend the budget before the plan
        assert throughput["details"]["ok"] >= 1 and "train" in summary["throughput"]["dali-ref"]
    else:
        assert throughput["reason"].startswith("does not fit --budget 20 s")
    with tarfile.open(out / "check.tar.gz") as tar:
        names = set(tar.getnames())
        assert {f"check/{name}" for name in FILES if name != "check.tar.gz"} <= names
        packed = json.load(tar.extractfile(f"check/results/{check['bench_run']}.json"))
    assert packed["format"] == "dali-pipelines-bench/2"
    assert packed["command"].startswith("python -m bench check")
    assert "-- sample:" in (out / "check.log").read_text()
    assert "## The benchmark run" in (out / "check.md").read_text()


def test_training_figures_come_from_the_epochs_after_the_first(tmp_path: Path) -> None:
    rows = _CsvFile(tmp_path / "epochs.csv", EPOCH_FIELDS)
    for epoch, rate, wait in ((0, 1000.0, 40.0), (1, 5000.0, 2.0), (2, 5200.0, 1.0)):
        rows.write({"epoch": epoch, "step": 25 * (epoch + 1), "images_per_s": rate, "data_wait_pct": wait,
                    "gpu_idle_pct": None})
    rows.close()
    figures = train_figures(tmp_path, synthetic_images_per_s=5500.0)
    assert figures["images_per_s"] == 5100.0 and figures["data_wait_pct"] == 1.5
    assert figures["vs_synthetic"] == pytest.approx(5100 / 5500) and figures["gpu_idle_pct"] is None
    assert figures["steady_epochs"] == 2 and len(figures["epochs"]) == 3


def test_test_outcomes_are_read_from_pytest_lines(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text(
        "import pytest\n\ndef test_ok():\n    pass\n\ndef test_bad():\n    assert False\n\n"
        "@pytest.mark.skip(reason='x')\ndef test_skipped():\n    pass\n")
    log = tmp_path / "tests.log"
    with open(log, "wb") as f:
        subprocess.run([sys.executable, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider",
                        str(tmp_path / "test_three.py")], stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path,
                       check=False, timeout=120)
    outcome = pytest_outcome(log)
    assert (outcome["passed"], outcome["failed"], outcome["skipped"]) == (1, 1, 1)
    assert outcome["failures"] == ["test_three.py::test_bad"]
    assert "1 failed, 1 passed, 1 skipped" in outcome["summary"]
