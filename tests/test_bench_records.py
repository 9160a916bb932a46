"""The typed run file reads the committed results and writes them back byte for byte: JSON,
CSV, the Markdown report and the JSON summary."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from bench.cli import RESULTS_DIR
from bench.measure import StepFigures
from bench.publish import save_run
from bench.queries import capped_figures, summary
from bench.records import FORMAT, Record, Run, newest_run, read_run
from bench.report import render_markdown


def test_the_committed_run_writes_back_byte_for_byte(tmp_path: Path) -> None:
    path, run = newest_run(RESULTS_DIR)
    assert run.results and all(isinstance(r, Record) for r in run.results)
    save_run(run, tmp_path)
    for suffix in (".json", ".csv"):
        written = (tmp_path / path.name).with_suffix(suffix).read_bytes()
        assert written == path.with_suffix(suffix).read_bytes(), suffix
    assert render_markdown(run) == path.with_suffix(".md").read_text(encoding="utf-8")
    committed_summary = RESULTS_DIR / "summary.json"
    if committed_summary.exists():
        expected = json.loads(committed_summary.read_text(encoding="utf-8"))
        assert {**summary(run, path), "file": None} == {**expected, "file": None}


def test_a_failed_and_an_e2e_record_round_trip(tmp_path: Path) -> None:
    """The fields the committed CPU run leaves empty: a traceback, the step's GPU figures."""
    _, run = newest_run(RESULTS_DIR)
    ok = run.results[0]
    failed = dataclasses.replace(ok, status="error", reason="RuntimeError: x", measurement=None,
                                 traceback="Traceback (most recent call last):\n")
    e2e = dataclasses.replace(ok, section="e2e", consumer=StepFigures(gpu_idle_frac=0.25, gpu_step_ms=None))
    assert failed.to_dict()["traceback"] and "traceback" not in ok.to_dict()
    assert ok.to_dict()["consumer"] == {} and e2e.to_dict()["consumer"] == {"gpu_idle_frac": 0.25,
                                                                             "gpu_step_ms": None}
    file = tmp_path / "run.json"
    file.write_text(json.dumps(dataclasses.replace(run, results=[failed, e2e]).to_dict()), encoding="utf-8")
    back = read_run(file)
    assert isinstance(back, Run) and back.results == [failed, e2e]


def test_a_broken_run_file_is_named(tmp_path: Path) -> None:
    """A file that says it is a run of this format but lacks its fields: refused, by name."""
    broken = tmp_path / "cut.json"
    broken.write_text(json.dumps({"format": FORMAT, "started": "2026-01-01T00:00:00+00:00"}))
    expected = f"{broken} is marked {FORMAT} but does not read as a run"
    with pytest.raises(ValueError, match=re.escape(expected)):
        newest_run(tmp_path)


def test_capped_section_table_and_summary() -> None:
    """The capped section from records shaped as its jobs write them (the committed run's dali-cpu
    measurement, CPU figures set by hand): ratios against the uncapped shards, rows by descending cap."""
    _, run = newest_run(RESULTS_DIR)
    base = next(r for r in run.results if r.ok and r.backend == "dali-cpu")
    measured = base.measurement
    assert measured is not None

    def record(source: str, cpu_ms: float, rate: float) -> Record:
        m = dataclasses.replace(measured, cpu_s_per_1000=cpu_ms, images_per_s=rate)
        return dataclasses.replace(base, section="capped", source=source, measurement=m)

    records = [record("capped-256", 1.0, 400.0), record("uncapped", 4.0, 100.0),
               record("capped-384", 2.0, 200.0)]
    capped = dataclasses.replace(run, results=records)
    assert [(f.max_side, f.cpu_vs_uncapped, f.rate_vs_uncapped) for f in capped_figures(capped)] == [
        (None, 1.0, 1.0), (384, 0.5, 2.0), (256, 0.25, 4.0)]
    assert summary(capped)["capped_cpu_vs_uncapped"] == {"384": 0.5, "256": 0.25}
    markdown = render_markdown(capped)
    assert "| as stored | 100 | 4.00 | 1.00 | 1.00x |\n| 384 px | 200 | 2.00 | 0.50 | 2.00x |" in markdown
