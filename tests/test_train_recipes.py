"""Recipes beyond the default GoogLeNet run, on the CPU fallback: another model, LAMB with gradient
clipping and accumulation, random erasing in the DALI graph, progressive resizing; their exact
resume; the eval and export commands on the run's checkpoint; and the progressive-resize benchmark
reading the run's records.

Optimizer, weights-file and schedule rules on their own are in test_train_recipe_parts.py.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torchvision
from run_records import read_rows, step_losses

from bench import progressive
from dali_pipelines import PipelineConfig, make_loader, open_source, open_train_val
from train.cli import main
from train.config import ConfigError, TrainConfig, get_args_parser
from train.evaluate import EvalRequest, eval_source
from train.resolution import ResizeSchedule
from train.trained import load_trained

CLASSES = ("astronaut", "space", "texture")
MODEL = "squeezenet1_1"  # the cheapest torchvision classifier to step on 2 cores (it has dropout)
# 27 train images in batches of 5: 5 batches per epoch, 2 optimizer steps of 2 batches each and one
# batch left over; 32 px in epoch 0, 64 px in epoch 1 (evaluation at 64).
RECIPE = ["--device", "cpu", "--batch-size", "5", "--workers", "2", "--model", MODEL, "--opt", "lamb",
          "--lr", "0.5", "--weight-decay", "0.01", "--clip-grad", "1", "--accum-steps", "2",
          "--random-erase", "0.5", "--progressive-resize", "32:64:0:1", "--epochs", "2", "--log-every", "1",
          "--seed", "3"]


@pytest.fixture(scope="module")
def recipe(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The recipe straight through 2 epochs (4 steps), and the same stopped by --max-steps 3 (mid
    epoch 1, after the size change) then resumed with only --resume and --max-steps."""
    base = tmp_path_factory.mktemp("recipe")
    whole, parts = base / "whole", base / "parts"
    assert main(["--data", str(tiny_root), *RECIPE, "--out", str(whole)]) == 0
    assert main(["--data", str(tiny_root), *RECIPE, "--max-steps", "3", "--out", str(parts)]) == 0
    assert main(["--resume", str(parts), "--max-steps", "4"]) == 0
    return {"whole": whole, "parts": parts, "root": tiny_root}


@pytest.mark.slow
def test_recipe_resumes_exactly_across_a_size_change(recipe: dict) -> None:
    """Stopped mid-epoch at 64 px and resumed, the run logs the uninterrupted run's losses at every
    step and ends with its weights: the loaders rebuilt at the new size continue the same samples
    and random streams (crops, erasing, dropout), accumulation and LAMB's moments continue."""
    expected, got = step_losses(recipe["whole"]), step_losses(recipe["parts"])
    assert sorted(got) == sorted(expected) == list(range(1, 5))
    for step in range(1, 5):
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
    rows = read_rows(recipe["whole"] / "epochs.csv")
    assert [(r["epoch"], r["step"], r["train_size"]) for r in rows] == [("0", "2", "32"), ("1", "4", "64")]
    assert [r["train_size"] for r in read_rows(recipe["parts"] / "epochs.csv")] == ["32", "64"]
    assert all(r["train_aux_loss"] == "" for r in rows)
    for row in read_rows(recipe["whole"] / "steps.csv"):
        assert row["aux_loss"] == ""
        per_step_s = (float(row["data_ms"]) + float(row["compute_ms"])) / 1000
        # images_per_s is rounded to 0.1, the times to a microsecond
        assert float(row["images_per_s"]) == pytest.approx(10 / per_step_s, rel=2e-3, abs=0.051), row
    config = json.loads((recipe["whole"] / "config.json").read_text(encoding="utf-8"))
    assert (config["global_batch"], config["steps_per_epoch"]) == (10, 2)
    assert config["scaled_lr"] == pytest.approx(0.5 * 10 / 256)
    assert config["pipeline"]["random_erase"] == 0.5 and config["pipeline"]["crop_size"] == 32
    assert (config["eval_pipeline"]["crop_size"], config["eval_pipeline"]["resize_size"]) == (64, 73)


@pytest.fixture(scope="module")
def val_batches(tiny_root: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 9 val images as the recipe's evaluation sees them (64 px), in batches of 4, 4 and 1."""
    cfg = PipelineConfig(batch_size=4, num_threads=2, device="cpu", crop_size=64, resize_size=73)
    loader = make_loader(open_source(str(tiny_root), split="val"), cfg, train=False)
    try:
        return list(loader)
    finally:
        loader.close()


@pytest.mark.slow
def test_eval_command_reports_the_runs_scores_per_class(recipe: dict, tmp_path: Path) -> None:
    """python -m train eval on the last checkpoint: the epoch's val top-1, top-5 and loss, as
    training computed them; per-class rows and a confusion matrix over the 9 val images."""
    out = tmp_path / "eval"
    ckpt = recipe["whole"] / "checkpoints" / "last.pt"
    assert main(["eval", str(ckpt), "--data", str(recipe["root"]), "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    last = read_rows(recipe["whole"] / "epochs.csv")[-1]
    assert summary["weights"] == "raw" and summary["images"] == 9 and summary["eval_size"] == 64
    for key in ("loss", "top1", "top5"):
        assert summary[key] == pytest.approx(float(last[f"val_{key}"]), rel=1e-5, abs=1e-6), key
    per_class = read_rows(out / "per_class.csv")
    assert [row["class"] for row in per_class] == list(CLASSES)
    assert sum(int(row["images"]) for row in per_class) == 9
    hits = sum(float(row["top1"]) * int(row["images"]) for row in per_class)
    assert hits == pytest.approx(summary["top1"] * 9)
    with open(out / "confusion.csv", newline="", encoding="utf-8") as handle:
        header, *lines = list(csv.reader(handle))
    assert header[1:] == list(CLASSES)
    matrix = [[int(v) for v in line[1:]] for line in lines]
    assert sum(map(sum, matrix)) == 9 and [sum(r) for r in matrix] == [3, 3, 3]
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_export_gives_the_checkpoints_logits(recipe: dict, val_batches: list, tmp_path: Path) -> None:
    """python -m train export: weights.pt loads strictly into torchvision's model; the TorchScript
    file gives the checkpoint's logits on every val image (fp32, within rounding)."""
    ckpt = recipe["whole"] / "checkpoints" / "last.pt"
    assert main(["export", str(ckpt), str(tmp_path)]) == 0
    about = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    assert (about["model"], about["classes"], about["input"]["height"]) == (MODEL, list(CLASSES), 64)
    model = torchvision.models.get_model(MODEL, weights=None, num_classes=3)
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))  # strict
    reference = load_trained(ckpt).module()
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    with torch.no_grad():
        for images, _ in val_batches:
            expected = reference(images)
            torch.testing.assert_close(scripted(images), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model.eval()(images), expected, rtol=0, atol=1e-6)


ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.slow
@pytest.mark.skipif(not ONNX, reason="needs onnx, onnxscript and onnxruntime (the export extra)")
def test_onnx_export_gives_the_checkpoints_logits(recipe: dict, val_batches: list, tmp_path: Path) -> None:
    """--format onnx: onnxruntime's logits on every val image, at any batch size, equal the
    checkpoint's within fp32 rounding."""
    import onnxruntime

    ckpt = recipe["whole"] / "checkpoints" / "last.pt"
    assert main(["export", str(ckpt), str(tmp_path), "--format", "onnx"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    reference = load_trained(ckpt).module()
    with torch.no_grad():
        for images, _ in val_batches:  # batches of 4 and a last one of 1
            got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
            torch.testing.assert_close(got, reference(images), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_test_only_evaluates_a_weights_file(recipe: dict, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--test-only --weights FILE --model NAME, as torchvision's reference: the file's weights are
    scored on --data's val split and nothing is trained."""
    weights = tmp_path / "w.pt"
    torch.save(load_trained(recipe["whole"] / "checkpoints" / "last.pt").state, weights)
    out = tmp_path / "eval"
    assert main(["--test-only", "--weights", str(weights), "--model", MODEL, "--data", str(recipe["root"]),
                 "--device", "cpu", "--eval-size", "64", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    last = read_rows(recipe["whole"] / "epochs.csv")[-1]
    assert summary["top1"] == pytest.approx(float(last["val_top1"]), abs=1e-6)
    assert summary["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
    assert "top-1" in capsys.readouterr().out and not (out.parent / "steps.csv").exists()


def test_eval_scores_the_runs_own_validation_images(tiny_root: Path, sample_root: Path) -> None:
    """eval of a run that held out --val-split of one data set scores that hold-out (and --split
    train the rest); --data of a split root reads its val/; data of other classes is refused."""
    data = str(tiny_root / "train")
    run = TrainConfig(data=data, val_split=0.34, seed=3)
    request = EvalRequest(data=data, device="cpu")
    held_out = eval_source(request, CLASSES, run=run)
    assert held_out.samples == open_train_val(data, val_split=0.34, seed=3).val.samples and len(held_out) == 9
    rest = eval_source(dataclasses.replace(request, split="train"), CLASSES, run=run)
    assert len(rest) == 18 and not set(rest.files) & set(held_out.files)
    root = eval_source(EvalRequest(data=str(tiny_root)), CLASSES, run=run)
    assert {Path(f).parent.parent.name for f in root.files} == {"val"} and len(root) == 9
    with pytest.raises(ConfigError, match=r"its val split has 8 classes .*the model was trained on 3"):
        eval_source(EvalRequest(data=str(sample_root)), CLASSES)


def test_eval_and_export_refuse_what_is_not_a_checkpoint(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not a checkpoint is named in one line, before any work, by both commands."""
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint", encoding="utf-8")
    for command in (["eval", str(bad), "--data", str(tmp_path)], ["export", str(bad), str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: checkpoint {bad}: not a checkpoint written by python -m train"), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_progressive_benchmark_reads_a_progressive_run(recipe: dict, tmp_path: Path) -> None:
    """bench.progressive: its training command is K epochs at START then K at END, evaluated at END;
    the run's epochs.csv gives the time per image by size with each size's first epoch (graph build,
    warm-up) left out; the ratio is judged against (START/END)^2 x 1.2; bad input is named."""
    args = progressive.get_args_parser().parse_args(["--data", str(recipe["root"]), "--sizes", "128:192",
                                                     "--epochs-per-size", "3", "--model", MODEL])
    command = progressive.train_command(args, ResizeSchedule.parse(args.sizes), tmp_path / "run")
    assert command[1:3] == ["-m", "train"]
    cfg = TrainConfig(**vars(get_args_parser().parse_args(command[3:])))
    assert [cfg.train_crop_at(e) for e in range(cfg.epochs)] == [128] * 3 + [192] * 3 and cfg.eval_crop == 192
    epochs = progressive.read_epochs(recipe["whole"] / "epochs.csv")  # 32 px in epoch 0, 64 in epoch 1
    assert [(row["epoch"], row["train_size"]) for row in epochs] == [(0, 32), (1, 64)]
    assert all(row["seconds"] > 0 and row["images_per_s"] > 0 for row in epochs)
    times = progressive.per_image_seconds(epochs)
    assert times == {32: [], 64: []}  # each size's first epoch is its warm-up
    rates = [(128, 10.0), (128, 20.0), (128, 25.0), (192, 5.0), (192, 4.0)]
    assert progressive.per_image_seconds([{"train_size": s, "images_per_s": r} for s, r in rates]) == {
        128: [0.05, 0.04], 192: [0.25]}
    with pytest.raises(ValueError, match="no epoch at 32 px after the first one"):
        progressive.figures(times, ResizeSchedule(32, 64))
    result = progressive.figures({128: [0.5, 0.4, 0.6], 192: [1.0, 1.2]}, ResizeSchedule(128, 192))
    assert result["ratio"] == pytest.approx(0.5 / 1.1) and result["target"] == pytest.approx(4 / 9 * 1.2)
    assert result["meets_target"] and result["start_range_ms"] == pytest.approx([400, 600])
    assert not progressive.figures({128: [0.6], 192: [1.0]}, ResizeSchedule(128, 192))["meets_target"]
    no_val = progressive.get_args_parser().parse_args(["--data", str(recipe["root"] / "train")])
    assert progressive.input_error(no_val).startswith(f"--data {recipe['root'] / 'train'}: no train/ or val/")
    assert progressive.main(["--data", str(recipe["root"]), "--sizes", "64:32"]) == 2
