"""The meter, the run -> JSON/CSV/PNG/Markdown chain, and soak mode, on tiny real runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.runner import measure_throughput
from bench.soak import growth_summary, run_soak, write_soak
from dali_pipelines import scan_image_folder


class CountingBatches:
    """Three real (small) batches per pass; counts passes to check epoch handling."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for _ in range(3):
            yield torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.int64)


def test_measure_counts_images_and_passes() -> None:
    batches = CountingBatches()
    m = measure_throughput(lambda: batches, warmup_batches=2, repeats=3, batches_per_repeat=5)
    assert m.images == 3 * 5 * 4 and m.batches == 15 and len(m.repeats) == 3
    assert m.images_per_s_min <= m.images_per_s <= m.images_per_s_max
    assert m.cpu_s_per_1000 >= 0 and m.peak_pss_mb > 0 and m.peak_gpu_mb is None
    assert m.memory_metric in ("pss", "rss")
    assert 0.0 <= m.data_wait_frac <= 1.0
    assert batches.passes == 6  # 2 + 15 batches over passes of 3: streams across epoch ends


def test_measure_full_passes() -> None:
    batches = CountingBatches()
    m = measure_throughput(lambda: batches, warmup_batches=1, repeats=3, batches_per_repeat=None)
    assert m.batches == 9 and batches.passes == 4  # warm-up pass finished untimed, then 3 passes


def test_quick_run_writes_json_csv_png_markdown(tmp_path: Path, sample_root: Path,
                                                capsys) -> None:
    out = tmp_path / "results"
    assert main(["--quick", "--data", str(sample_root), "--out", str(out),
                 "--backends", "naive,dali-cpu,dali-gpu", "--batch-size", "8"]) == 0
    run = json.loads(next(out.glob("*.json")).read_text())
    assert run["machine"]["cores"] >= 1 and run["versions"]["DALI"] and "--quick" in run["command"]
    assert run["data"]["images"] == 72  # sample_root has train/ and val/: train/ is used
    by_key = {(r["section"], r["backend"]): r for r in run["results"]}
    assert by_key[("throughput", "dali-cpu")]["status"] == "ok"
    assert by_key[("overlap", "synthetic")]["status"] == "ok"
    if not torch.cuda.is_available():
        assert by_key[("throughput", "dali-gpu")]["status"] == "skipped"
    rows = list(csv.DictReader(next(out.glob("*.csv")).open()))
    assert len(rows) == len(run["results"])
    assert {p.name.rsplit("-", 1)[-1] for p in out.glob("*.png")} >= {"throughput.png", "efficiency.png"}
    capsys.readouterr()
    assert main(["report", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| `dali-cpu` |" in table
    if not torch.cuda.is_available():
        assert "`dali-gpu` skipped" in table
    assert "Overlap with a simulated accelerator step" in table


def test_soak_records_memory_per_epoch(tmp_path: Path, train_root: Path) -> None:
    run = run_soak(scan_image_folder(train_root), ["cpu"], epochs=3, batch_size=16, threads=1)
    assert [r["epoch"] for r in run["epochs"]] == [1, 2, 3]
    assert all(r["rss_mb"] > 0 and r["images"] == 64 for r in run["epochs"])
    assert run["summary"]["cpu"]["epochs"] == 3
    paths = write_soak(run, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


class FakeEvent:
    """A CUDA event stand-in at a fixed time (ms) on the GPU timeline."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def elapsed_time(self, other: FakeEvent) -> float:
        return other.ms - self.ms


def test_idle_fraction_is_gaps_between_steps() -> None:
    from bench.steps import idle_fraction

    # steps busy 0-10, 12-22, 30-40 ms: gaps 2 + 8 = 10 of 40 ms on the GPU timeline
    spans = [(FakeEvent(a), FakeEvent(b)) for a, b in ((0, 10), (12, 22), (30, 40))]
    assert idle_fraction(spans) == pytest.approx(0.25)
    assert idle_fraction(spans[:1]) is None


def _epoch(epoch: int, rss_mb: float, gpu_mb: float | None = None) -> dict:
    return {"device": "cpu", "epoch": epoch, "images": 64, "images_per_s": 1.0, "rss_mb": rss_mb,
            "gpu_mb": gpu_mb}


def test_growth_summary_measures_from_epoch_two() -> None:
    summary = growth_summary([_epoch(1, 100.0, 50.0), _epoch(2, 110.0, 80.0), _epoch(3, 121.0, 88.0)])
    assert summary["epochs"] == 3
    assert (summary["rss_epoch2_mb"], summary["rss_last_mb"]) == (110.0, 121.0)
    assert summary["rss_growth_pct"] == pytest.approx(10.0)
    assert summary["gpu_growth_pct"] == pytest.approx(10.0)


def test_growth_summary_single_epoch_is_zero_growth() -> None:
    summary = growth_summary([_epoch(1, 100.0)])
    assert summary["epochs"] == 1 and summary["rss_epoch2_mb"] == 100.0
    assert summary["rss_growth_pct"] == 0.0 and summary["gpu_growth_pct"] is None


@pytest.mark.gpu
def test_e2e_googlenet_reports_efficiency_and_gpu_idle(val_root: Path) -> None:
    from bench.jobs import Job, execute
    from bench.workloads import RunSpec

    for backend in ("synthetic", "dali-gpu"):
        spec = RunSpec(workload="train", batch_size=8, workers=2, device="cuda")
        record = execute(Job("e2e", backend, spec, warmup_batches=1, repeats=3, batches_per_repeat=2),
                         str(val_root))
        assert record["status"] == "ok", record.get("reason")
        idle = record["gpu_idle_frac"]
        assert isinstance(idle, float) and 0.0 <= idle < 1.0  # no clamp: < 0 or 1.0 would be a bug
        assert record["measurement"]["peak_gpu_mb"] > 0
