"""Recipes beyond the default GoogLeNet run, on the CPU fallback: another model, LAMB with gradient
clipping and accumulation, random erasing in the DALI graph, progressive resizing; their exact
resume.

The optimizers on their own are in test_train_optim.py; models, weights files and sizes in
test_train_models.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from train.cli import main

CLASSES = ("astronaut", "space", "texture")
MODEL = "squeezenet1_1"  # the cheapest torchvision classifier to step on 2 cores (it has dropout)
# 27 train images in batches of 5: 5 batches per epoch, 2 optimizer steps of 2 batches each and one
# batch left over; 32 px in epoch 0, 64 px from epoch 1 on (evaluation at 64).
RECIPE = ["--device", "cpu", "--batch-size", "5", "--workers", "2", "--model", MODEL, "--opt", "lamb",
          "--lr", "0.5", "--weight-decay", "0.01", "--clip-grad", "1", "--accum-steps", "2",
          "--random-erase", "0.5", "--progressive-resize", "32:64:0:1", "--epochs", "3", "--log-every", "1",
          "--seed", "3"]


@pytest.fixture(scope="module")
def tiny_root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three visually distinct classes of the sample set: 27 train and 9 val JPEGs."""
    root = tmp_path_factory.mktemp("tiny")
    for split in ("train", "val"):
        for name in CLASSES:
            shutil.copytree(sample_root / split / name, root / split / name)
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _losses(run_dir: Path) -> dict[int, float]:
    return {int(row["step"]): float(row["loss"]) for row in _rows(run_dir / "steps.csv")}


@pytest.fixture(scope="module")
def recipe(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The recipe straight through 3 epochs (6 steps), and the same stopped by --max-steps 3 (mid
    epoch 1, after the size change) then resumed with only --resume and --max-steps."""
    base = tmp_path_factory.mktemp("recipe")
    whole, parts = base / "whole", base / "parts"
    assert main(["--data", str(tiny_root), *RECIPE, "--out", str(whole)]) == 0
    assert main(["--data", str(tiny_root), *RECIPE, "--max-steps", "3", "--out", str(parts)]) == 0
    assert main(["--resume", str(parts), "--max-steps", "6"]) == 0
    return {"whole": whole, "parts": parts, "root": tiny_root}


@pytest.mark.slow
def test_recipe_resumes_exactly_across_a_size_change(recipe: dict) -> None:
    """Stopped mid-epoch at 64 px and resumed, the run logs the uninterrupted run's losses at every
    step and ends with its weights: the loaders rebuilt at the new size continue the same samples
    and random streams (crops, erasing, dropout), accumulation and LAMB's moments continue."""
    expected, got = _losses(recipe["whole"]), _losses(recipe["parts"])
    assert sorted(got) == sorted(expected) == list(range(1, 7))
    for step in range(1, 7):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"
    whole = torch.load(recipe["whole"] / "checkpoints" / "last.pt", weights_only=True)
    parts = torch.load(recipe["parts"] / "checkpoints" / "last.pt", weights_only=True)
    for key, value in whole["model"].items():
        torch.testing.assert_close(parts["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert whole["config"]["model"] == MODEL and set(whole["optimizer"]["state"][0]) == {
        "step", "exp_avg", "exp_avg_sq"}


@pytest.mark.slow
def test_records_show_sizes_steps_and_one_rate(recipe: dict) -> None:
    """epochs.csv gives each epoch's training size; 2 optimizer steps per epoch (the 5th batch is
    left over); no aux column for a model without auxiliary heads; every steps.csv row's rate is
    its images over its data + compute time; the graphs' settings are recorded."""
    rows = _rows(recipe["whole"] / "epochs.csv")
    assert [(r["epoch"], r["step"], r["train_size"]) for r in rows] == [
        ("0", "2", "32"), ("1", "4", "64"), ("2", "6", "64")]
    assert [r["train_size"] for r in _rows(recipe["parts"] / "epochs.csv")] == ["32", "64", "64"]
    assert all(r["train_aux_loss"] == "" for r in rows)
    for row in _rows(recipe["whole"] / "steps.csv"):
        assert row["aux_loss"] == ""
        per_step_s = (float(row["data_ms"]) + float(row["compute_ms"])) / 1000
        # images_per_s is rounded to 0.1, the times to a microsecond
        assert float(row["images_per_s"]) == pytest.approx(10 / per_step_s, rel=2e-3, abs=0.051), row
    config = json.loads((recipe["whole"] / "config.json").read_text(encoding="utf-8"))
    assert (config["global_batch"], config["steps_per_epoch"]) == (10, 2)
    assert config["scaled_lr"] == pytest.approx(0.5 * 10 / 256)
    assert config["pipeline"]["random_erase"] == 0.5 and config["pipeline"]["crop_size"] == 32
    assert (config["eval_pipeline"]["crop_size"], config["eval_pipeline"]["resize_size"]) == (64, 73)
