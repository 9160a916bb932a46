"""``python -m train --tune``: the loader settings tuned by training steps before the run, recorded
in config.json and the checkpoint, and taken from the checkpoint on resume without tuning again.
CPU fallback, real DALI, torch and GoogLeNet."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from train.checkpoint import CheckpointError, load_checkpoint, save_atomic
from train.cli import main

FAST = ["--device", "cpu", "--image-size", "32", "--batch-size", "9", "--epochs", "1", "--log-every", "1"]
RECORDED = {"num_threads": 1, "prefetch_queue_depth": 1}  # a recorded choice the defaults (2, 2) are not


def _config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_tuned_settings_are_recorded_and_a_resume_reuses_them_without_tuning(
        sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DALI_PIPELINES_CACHE", str(tmp_path / "cache"))  # no saved tuning yet
    store = tmp_path / "cache" / "tune"
    out = tmp_path / "run"
    # 1 s: the defaults are scored (always, whatever the budget) and nothing else fits.
    assert main(["--data", str(sample_root), *FAST, "--max-steps", "1", "--tune", "--tune-seconds", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    budget = printed.index("tuning the loader: at most 1 s (--tune-seconds)")
    assert budget < printed.index("chosen: num_threads=2, prefetch_queue_depth=2 (the defaults)")
    tuning = _config(out)["tuning"]
    assert tuning["origin"] == "tuned"
    assert tuning["metric"] == "images/s of googlenet training steps fed by the loader"
    assert tuning["settings"] == {k: _config(out)["pipeline"][k] for k in tuning["settings"]}
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    assert payload["config"]["tune"] is True and payload["tuning"]["settings"] == tuning["settings"]
    assert payload["tuning"]["trials"][0]["images_per_s"] > 0  # the whole record, every scoring
    (saved,) = store.glob("*.json")
    untuned = tmp_path / "untuned.pt"  # a --tune run's checkpoint must carry its tuning
    save_atomic({**payload, "tuning": None}, untuned)
    with pytest.raises(CheckpointError, match="missing or malformed: tuning"):
        load_checkpoint(untuned)

    # The checkpoint's record decides the resumed loaders: make it differ from the defaults, and
    # empty the store, where a resume that tuned again would save its tuning.
    payload["tuning"]["settings"] = RECORDED
    save_atomic(payload, out / "checkpoints" / "last.pt")
    saved.unlink()
    with caplog.at_level(logging.INFO, logger="dali_pipelines.tune"):
        assert main(["--resume", str(out), "--max-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "loader settings recorded in the checkpoint" in printed and "tuning the loader" not in printed
    assert "tuning the" not in caplog.text and not list(store.glob("*.json"))  # nothing scored, nothing saved
    config = _config(out)
    assert config["tuning"]["origin"] == "checkpoint" and config["tuning"]["settings"] == RECORDED
    assert {k: config["pipeline"][k] for k in RECORDED} == RECORDED
    assert load_checkpoint(out / "checkpoints" / "last.pt")["tuning"]["settings"] == RECORDED


def test_tune_and_workers_are_one_choice(sample_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--data", str(sample_root), "--device", "cpu", "--tune", "--workers", "2"])
    assert "--workers sets the DALI threads and --tune picks them" in capsys.readouterr().err
