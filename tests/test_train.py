"""Training on the CPU fallback: learning, exact resume and its records, checkpoints, DDP, bad input.

Run-directory ownership and the resume command line are in test_train_runs.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from run_records import read_rows, step_losses

from train.checkpoint import save_atomic
from train.cli import main
from train.config import TrainConfig, get_args_parser

CLASSES = ("astronaut", "space", "texture")
# 32 px crops keep a GoogLeNet step cheap on 2 cores; the graph is the full one.
FAST = ["--device", "cpu", "--image-size", "32", "--batch-size", "9", "--workers", "2"]
# The resume runs augment in the DALI graph (RandAugment), mix batches (some mixup, some cutmix,
# some neither) and keep an EMA updated every 2 steps, with label smoothing: a resume must repeat
# all of it.
POLICY = ["--augment", "randaugment", "--augment-ops", "2", "--augment-magnitude", "9"]
MIX_AND_EMA = ["--mixup", "0.4", "--cutmix", "1.0", "--mix-prob", "0.8", "--label-smoothing", "0.1",
               "--ema-decay", "0.8", "--ema-every", "2"]


@pytest.mark.slow
def test_overfits_tiny_set(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GoogLeNet learns three classes well above chance (1/3) within 60 steps, seed fixed."""
    out = tmp_path / "run"
    code = main(["--data", str(tiny_root), *FAST, "--epochs", "20", "--lr", "3", "--warmup-epochs", "1",
                 "--out", str(out), "--log-every", "5"])
    assert code == 0
    epochs = read_rows(out / "epochs.csv")
    assert len(epochs) == 20 and int(epochs[-1]["step"]) == 60
    best_train = max(float(row["train_top1"]) for row in epochs[-5:])
    assert best_train >= 0.7, f"train top-1 stayed at {best_train}"
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])
    assert all(int(row["val_images"]) == 9 for row in epochs)
    assert main(["--resume", str(out)]) == 0  # nothing left: says so, exits 0
    assert f"run {out} is finished at step 60: all 20 epochs done" in capsys.readouterr().out


def _resume_args(tiny_root: Path) -> list[str]:
    """The settings of the resume runs: 3 steps per epoch, 4 epochs, everything random on (random
    erasing in the graph too), LARS with gradient clipping."""
    return ["--data", str(tiny_root), *FAST, *POLICY, *MIX_AND_EMA, "--epochs", "4", "--log-every", "1",
            "--seed", "5", "--opt", "lars", "--clip-grad", "2", "--random-erase", "0.3"]


@pytest.fixture(scope="module")
def resumed(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One run straight to step 8, and the same run stopped by --max-steps at step 4 (mid-epoch 1)
    then resumed to step 8 with only --resume and --max-steps; then that run's step-4 checkpoint
    is put back as last.pt and resumed again, as after a kill -9 at step 8 that lost the later
    saves. 3 steps per epoch, mixup / cutmix and an EMA on; the records of each stage are kept
    for the tests below."""
    base = tmp_path_factory.mktemp("resume")
    common = _resume_args(tiny_root)
    whole, parts = base / "whole", base / "parts"
    last = parts / "checkpoints" / "last.pt"
    assert main([*common, "--max-steps", "8", "--out", str(whole)]) == 0
    assert main([*common, "--max-steps", "4", "--out", str(parts)]) == 0
    step4, epochs_at_step4 = base / "step4.pt", read_rows(parts / "epochs.csv")
    shutil.copy(last, step4)
    assert main(["--resume", str(last), "--max-steps", "8"]) == 0
    losses_after_resume = step_losses(parts)
    shutil.copy(step4, last)
    assert main(["--resume", str(parts), "--max-steps", "8"]) == 0  # a run directory means its last.pt
    return {"whole": whole, "parts": parts, "step4": step4, "epochs_at_step4": epochs_at_step4,
            "losses_after_resume": losses_after_resume}


@pytest.mark.slow
def test_resume_continues_the_same_losses(resumed: dict) -> None:
    """Stopped after 4 steps and resumed, a run logs the same per-step losses as an uninterrupted
    one through step 8, across an epoch boundary and the mid-run evaluation: the same batches
    mixed the same way (each rank's mixing generator is in the checkpoint)."""
    expected, got = step_losses(resumed["whole"]), resumed["losses_after_resume"]
    assert sorted(got) == sorted(expected) == list(range(1, 9))
    for step in range(1, 9):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"


def _assert_same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        torch.testing.assert_close(value, second[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_resume_ends_with_the_same_ema(resumed: dict) -> None:
    """The resumed run's last.pt holds the uninterrupted run's EMA (parameters and buffers), which
    differs from the raw weights; each rank's mixing generator state is saved beside it."""
    whole = torch.load(resumed["whole"] / "checkpoints" / "last.pt", weights_only=True)
    parts = torch.load(resumed["parts"] / "checkpoints" / "last.pt", weights_only=True)
    assert whole["step"] == parts["step"] == 8
    _assert_same_weights(parts["ema"], whole["ema"])
    _assert_same_weights(parts["model"], whole["model"])
    assert not torch.equal(whole["ema"]["fc.weight"], whole["model"]["fc.weight"])
    assert torch.equal(whole["ema"]["conv1.bn.running_mean"], whole["model"]["conv1.bn.running_mean"])
    assert torch.equal(parts["ranks"][0]["mix_rng"], whole["ranks"][0]["mix_rng"])


@pytest.mark.slow
def test_resume_after_a_crash_rewrites_the_records(resumed: dict) -> None:
    """Resuming from a checkpoint older than the records (kill -9) cuts steps.csv and epochs.csv
    back to it: each step and each epoch has one row, with the uninterrupted run's values."""
    steps = [int(row["step"]) for row in read_rows(resumed["parts"] / "steps.csv")]
    assert steps == list(range(1, 9))
    expected = step_losses(resumed["whole"])
    for step, loss in step_losses(resumed["parts"]).items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"
    assert [row["epoch"] for row in read_rows(resumed["parts"] / "epochs.csv")] == ["0", "1", "2"]


@pytest.mark.slow
def test_resumed_epoch_row_covers_the_whole_epoch(resumed: dict) -> None:
    """The --max-steps stop at step 4 logged a partial row for epoch 1; after the resume, epoch 1
    has one row at step 6 whose training loss and accuracy cover all of its steps (4-6), equal
    to the uninterrupted run's, not only the steps after the resume."""
    assert [(r["epoch"], r["step"]) for r in resumed["epochs_at_step4"]] == [("0", "3"), ("1", "4")]
    whole = {row["epoch"]: row for row in read_rows(resumed["whole"] / "epochs.csv")}
    parts = {row["epoch"]: row for row in read_rows(resumed["parts"] / "epochs.csv")}
    assert parts["1"]["step"] == whole["1"]["step"] == "6"
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "ema_val_loss", "ema_val_top1"):
        assert float(parts["1"][key]) == pytest.approx(float(whole["1"][key]), rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_stop_on_an_epochs_last_step_resumes_into_the_next_epoch(resumed: dict, tiny_root: Path,
                                                                 tmp_path: Path) -> None:
    """--max-steps 3 ends exactly on epoch 0's last step: the stop still ends the epoch (its
    evaluation, its row, best.pt), and the resumed run trains epoch 1 as epoch 1, with the
    uninterrupted run's losses and rows; not epoch 0 again with epoch 1's batches."""
    out = tmp_path / "boundary"
    assert main([*_resume_args(tiny_root), "--max-steps", "3", "--out", str(out)]) == 0
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"], saved["epoch_step"]) == (1, 3, 0)
    assert (out / "checkpoints" / "best.pt").is_file()
    assert main(["--resume", str(out), "--max-steps", "6"]) == 0
    whole = read_rows(resumed["whole"] / "epochs.csv")[:2]
    rows = read_rows(out / "epochs.csv")
    assert [(r["epoch"], r["step"]) for r in rows] == [(r["epoch"], r["step"]) for r in whole] == [
        ("0", "3"), ("1", "6")]
    for got, want in zip(rows, whole, strict=True):
        for key in ("train_loss", "val_loss", "ema_val_loss"):
            assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-5, abs=1e-6), key
    expected = step_losses(resumed["whole"])
    for step, loss in step_losses(out).items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"


@pytest.mark.slow
def test_losses_are_the_main_heads_with_the_aux_share_apart(resumed: dict) -> None:
    """GoogLeNet's records report the main head's loss (the footing of val_loss) and its auxiliary
    heads' weighted share in a column of its own, per step and per epoch."""
    for row in read_rows(resumed["whole"] / "steps.csv"):
        assert float(row["aux_loss"]) > 0 and float(row["loss"]) > 0
    for row in read_rows(resumed["whole"] / "epochs.csv"):
        assert float(row["train_aux_loss"]) > 0 and row["train_size"] == "32"
    optimizer = torch.load(resumed["whole"] / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    assert optimizer["param_groups"][0]["trust_coeff"] == 1e-3  # LARS's state dict


@pytest.mark.slow
def test_step_records_the_learning_rate_the_step_used(resumed: dict) -> None:
    """steps.csv's lr is the rate step k trained with: k/6 of the peak over the 2-epoch warm-up
    (6 steps), the peak being --lr 0.1 scaled by the batch (9/256)."""
    peak = 0.1 * 9 / 256
    lrs = {int(row["step"]): float(row["lr"]) for row in read_rows(resumed["whole"] / "steps.csv")}
    for step in range(1, 7):
        assert lrs[step] == pytest.approx(peak * step / 6, rel=1e-9), f"step {step}"


@pytest.mark.slow
def test_augment_settings_reach_the_train_graph(resumed: dict) -> None:
    """--augment and its knobs are recorded as the pipeline's own settings (config.json)."""
    pipeline = json.loads((resumed["whole"] / "config.json").read_text(encoding="utf-8"))["pipeline"]
    chosen = (pipeline["augment"], pipeline["augment_ops"], pipeline["augment_magnitude"])
    assert chosen == ("randaugment", 2, 9)


@pytest.mark.slow
def test_checkpoint_loads_into_torchvision(resumed: dict) -> None:
    """The stored weights, raw and EMA, load strictly into torchvision's GoogLeNet and give finite
    logits. best.pt is the epoch with the best EMA top-1 when an EMA is kept."""
    payload = torch.load(resumed["whole"] / "checkpoints" / "best.pt", weights_only=True)
    assert payload["classes"] == list(CLASSES)
    assert payload["config"]["image_size"] == 32 and payload["format_version"] == 3
    for key in ("model", "ema"):
        model = torchvision.models.googlenet(weights=None, num_classes=len(CLASSES), aux_logits=True,
                                             init_weights=False)
        model.load_state_dict(payload[key])  # strict: every key matches, none left over
        model.eval()
        with torch.no_grad():
            logits = model(torch.zeros(1, 3, 32, 32))
        assert logits.shape == (1, len(CLASSES)) and torch.isfinite(logits).all(), key
    rows = read_rows(resumed["whole"] / "epochs.csv")
    best = max(rows, key=lambda row: float(row["ema_val_top1"]))  # the first of equals
    assert payload["epoch"] == int(best["epoch"]) + 1
    assert payload["best_top1"] == pytest.approx(float(best["ema_val_top1"]), abs=1e-6)


@pytest.mark.slow
def test_eval_of_a_run_directory_scores_its_best_ema(resumed: dict, tmp_path: Path) -> None:
    """python -m train eval RUN_DIR evaluates its best.pt with the EMA's weights (GoogLeNet without
    its auxiliary heads) and finds the scores its epoch row recorded for them."""
    assert main(["eval", str(resumed["whole"]), "--device", "cpu", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    best = max(read_rows(resumed["whole"] / "epochs.csv"), key=lambda row: float(row["ema_val_top1"]))
    assert summary["weights"] == "ema" and summary["checkpoint"].endswith("best.pt")
    for key in ("loss", "top1", "top5"):
        assert summary[key] == pytest.approx(float(best[f"ema_val_{key}"]), rel=1e-5, abs=1e-6), key


def _torchrun(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """python -m train under torchrun: 2 CPU processes joined through gloo."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ddp_runs(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """2-process gloo runs on the tiny set plus 2 bad files (skipped), mixing batches and keeping
    an EMA, 2 batches of 3 per optimizer step (gradients all-reduced on the second only): 2 epochs
    straight, and the same stopped at step 1 and resumed with only --resume and --max-steps. No
    RandAugment: DALI's AutoGraph conversion of its policy costs every fresh process seconds, and
    its resume is tested in one process (tests/test_augment.py, the resumed fixture above); the
    ranks' DALI random crops and flips are resumed here."""
    base = tmp_path_factory.mktemp("ddp")
    root = _with_bad_files(tiny_root, base)
    common = ["--data", str(root), "--device", "cpu", "--image-size", "32", "--batch-size", "3",
              "--accum-steps", "2", "--workers", "1", "--epochs", "2", "--log-every", "1", "--seed", "4",
              "--on-bad-file", "skip", *MIX_AND_EMA]
    whole, parts = base / "whole", base / "parts"
    first = _torchrun(whole, *common)
    _torchrun(parts, *common, "--max-steps", "1")
    _torchrun(parts, "--resume", str(parts / "checkpoints" / "last.pt"), "--max-steps", "4")
    return {"whole": whole, "parts": parts, "first": first}


@pytest.mark.slow
def test_two_process_gloo_run_counts_val_once(ddp_runs: dict) -> None:
    """torchrun with 2 CPU processes (gloo) trains, and eval sees each of the 9 val images once."""
    assert "ranks: 2" in ddp_runs["first"].stdout
    epochs = read_rows(ddp_runs["whole"] / "epochs.csv")  # rank 0 alone writes
    assert [int(row["val_images"]) for row in epochs] == [9, 9]
    # 27 good images over 2 ranks: shards of 13 and 14, 4 full batches of 3 on each, 2 per step.
    assert [int(row["step"]) for row in epochs] == [2, 4]


@pytest.mark.slow
def test_two_process_warning_is_printed_once(ddp_runs: dict) -> None:
    """Rank 0 alone verifies the data and warns about the skipped files: once per run."""
    assert ddp_runs["first"].stderr.count("skipping 2 of 29 files") == 1, ddp_runs["first"].stderr[-3000:]


@pytest.mark.slow
def test_two_process_resume_continues_the_same_losses(ddp_runs: dict) -> None:
    """Under DDP every rank's loader position, RNG and mixing generator are saved: a 2-process run
    stopped after 1 step (mid-epoch, between accumulated steps) and resumed logs the same losses
    through step 4 (past an epoch end) as one that ran on, and ends with the same EMA (kept from
    the unwrapped model, saved by rank 0)."""
    parts = torch.load(ddp_runs["parts"] / "checkpoints" / "last.pt", weights_only=True)
    whole = torch.load(ddp_runs["whole"] / "checkpoints" / "last.pt", weights_only=True)
    assert len(parts["ranks"]) == 2
    assert not torch.equal(parts["ranks"][0]["mix_rng"], parts["ranks"][1]["mix_rng"])  # own draws
    expected, got = step_losses(ddp_runs["whole"]), step_losses(ddp_runs["parts"])
    assert sorted(got) == sorted(expected) == list(range(1, 5))
    for step in range(1, 5):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"
    _assert_same_weights(parts["ema"], whole["ema"])
    assert set(parts["ema"]) == set(parts["model"])  # module. prefix-free, as the raw weights
    rows = {row["epoch"]: row for row in read_rows(ddp_runs["parts"] / "epochs.csv")}
    assert float(rows["1"]["ema_val_loss"]) == pytest.approx(
        float(read_rows(ddp_runs["whole"] / "epochs.csv")[1]["ema_val_loss"]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: expected an integer in [1, 65536], got 0"),
        (["--image-size", "8"], "argument --image-size: expected an integer in [32, 4096], got 8"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--lr", "fast"], "argument --lr: expected a number >= 0, got 'fast'"),
        (["--momentum", "1.5"], "argument --momentum: expected a number in [0, 1), got 1.5"),
        (["--amp", "int8"], "argument --amp: invalid choice: 'int8'"),
        (["--seed", "-1"], "argument --seed: expected a seed in [0, 2**30), got -1"),
        (["--mixup", "-0.2"], "argument --mixup: expected a number >= 0, got -0.2"),
        (["--cutmix", "big"], "argument --cutmix: expected a number >= 0, got 'big'"),
        (["--mix-prob", "1.5"], "argument --mix-prob: expected a probability in [0, 1], got 1.5"),
        (["--mix-switch-prob", "2"], "argument --mix-switch-prob: expected a probability in [0, 1], got 2.0"),
        (["--ema-decay", "1"], "argument --ema-decay: expected a number in [0, 1), got 1.0"),
        (["--ema-every", "0"], "argument --ema-every: expected a positive integer, got 0"),
        (["--augment", "cutout"], "argument --augment: invalid choice: 'cutout'"),
        (["--augment-ops", "0"], "argument --augment-ops: expected an integer in [1, 16], got 0"),
    ],
)
def test_bad_arguments_name_the_flag(tiny_root: Path, args: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """argparse rejects each bad value with the flag and the accepted values."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tiny_root), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_gives_every_flag_a_default() -> None:
    """--help documents every flag, each help ending "(default: ...)", plus resume examples."""
    parser = get_args_parser()
    flags = [action for action in parser._actions if action.option_strings != ["-h", "--help"]]
    assert len(flags) == len(dataclasses.fields(TrainConfig))
    for action in flags:
        assert re.search(r"\(default: [^)]+\)$", action.help or ""), action.option_strings
    text = parser.format_help()
    assert "--resume runs/demo/checkpoints/last.pt" in text and "may differ from the saved run" in text


def test_gpu_without_cuda_suggests_cpu(tiny_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device gpu on a machine without CUDA fails at once and suggests --device cpu."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tiny_root), "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_augment_magnitude_outside_its_bins_is_refused(tiny_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A magnitude bin past the bin count fails with both flags named, before any work."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tiny_root), *FAST, "--augment", "randaugment", "--augment-magnitude", "12",
              "--augment-magnitude-bins", "10", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "--augment-magnitude 12 must be below --augment-magnitude-bins 10" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_data_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that is no split root, without validation data named, gives one error line naming
    it and the ways to give some, no traceback."""
    data = tmp_path / "data"
    data.mkdir()
    code = main(["--data", str(data), *FAST, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--data {data} is one data set, with no validation data: pass --val-split" in err
    assert "Traceback" not in err


def _with_bad_files(tiny_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    good = next((root / "train" / "space").iterdir())
    (root / "train" / "space" / "cut.jpg").write_bytes(good.read_bytes()[:2000])  # truncated
    (root / "train" / "texture" / "empty.jpg").write_bytes(b"")
    return root


def test_bad_files_stop_the_run_before_any_step(tiny_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--on-bad-file error (the default) names each bad file and exits 2 before training starts."""
    root = _with_bad_files(tiny_root, tmp_path)
    code = main(["--data", str(root), *FAST, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "space/cut.jpg" in err and "texture/empty.jpg" in err and "--on-bad-file skip" in err
    assert not (tmp_path / "run" / "steps.csv").exists()


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An interruption between writing the new file and renaming it leaves last.pt whole and
    loadable, and removes the temporary (only a kill leaves one, for the next run to remove)."""
    path = tmp_path / "checkpoints" / "last.pt"
    save_atomic({"step": 1, "weights": torch.ones(3)}, path)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt("killed before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert torch.load(path, weights_only=True)["step"] == 1


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_gpu_run_with_amp_reports_idle(tiny_root: Path, tmp_path: Path, amp: str) -> None:
    """On a GPU: nvJPEG loader, channels_last, AMP; the epoch row has GPU idle %."""
    out = tmp_path / amp
    code = main(["--data", str(tiny_root), "--device", "gpu", "--image-size", "64", "--batch-size", "9",
                 "--epochs", "2", "--amp", amp, "--out", str(out)])
    assert code == 0
    rows = read_rows(out / "epochs.csv")
    assert len(rows) == 2 and all(row["gpu_idle_pct"] != "" for row in rows)


@pytest.mark.gpu
def test_gpu_resume_keeps_one_row_per_epoch(tiny_root: Path, tmp_path: Path) -> None:
    """On a GPU: stopped mid-epoch and resumed with --resume alone (CUDA RNG, NHWC loader state and
    CUDA-event timing carried in the checkpoint), the run ends with one row per step and epoch."""
    out = tmp_path / "run"
    assert main(["--data", str(tiny_root), "--device", "gpu", "--image-size", "64", "--batch-size", "9",
                 "--epochs", "2", "--log-every", "1", "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["--resume", str(out), "--max-steps", "6"]) == 0
    assert [int(row["step"]) for row in read_rows(out / "steps.csv")] == list(range(1, 7))
    rows = read_rows(out / "epochs.csv")
    assert [(row["epoch"], row["step"]) for row in rows] == [("0", "3"), ("1", "6")]
    assert all(row["gpu_idle_pct"] != "" for row in rows)
