"""The report says where another loader beats this project's graph on the run's device."""

from __future__ import annotations

from bench.queries import ratios_to_ours
from bench.records import Run
from bench.report import ours_lines
from tests.bench_runs import record, run_of


def _run(device: str, rates: dict[str, dict[str, float]]) -> Run:
    return run_of(device, [record("throughput", b, w, rate) for b, by_workload in rates.items()
                           for w, rate in by_workload.items()])


def test_ratios_are_to_the_graph_of_the_runs_device_and_faster_ones_are_bold() -> None:
    rates = {"dali-cpu": {"resize": 700.0, "train": 900.0}, "dali-ref": {"resize": 690.0, "train": 950.0},
             "torch-tv": {"resize": 910.0, "train": 750.0}, "spdl": {"resize": 560.0}}
    ratios = ratios_to_ours(_run("cpu", rates))
    assert ratios == {"torch-tv": {"resize": 1.3, "train": 750.0 / 900.0}, "spdl": {"resize": 0.8}}
    table = "\n".join(ours_lines(_run("cpu", rates), ["resize", "train"]))
    assert "(`dali-cpu`;" in table
    assert "| `torch-tv` | **1.30x** | 0.83x |" in table and "| `spdl` | 0.80x | - |" in table
    gpu = {"dali-gpu": {"train": 10000.0}, "dali-cpu": {"train": 900.0}, "torchcodec": {"train": 12000.0}}
    assert ratios_to_ours(_run("gpu", gpu)) == {"dali-cpu": {"train": 0.09}, "torchcodec": {"train": 1.2}}


def test_no_table_without_the_graph_of_the_runs_device() -> None:
    run = _run("gpu", {"dali-cpu": {"train": 900.0}, "spdl": {"train": 800.0}})
    assert ratios_to_ours(run) == {} and ours_lines(run, ["train"]) == []
