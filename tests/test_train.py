"""Training CLI on the CPU fallback: learning, exact resume, checkpoints, DDP, signals, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision

from train.checkpoint import save_atomic
from train.cli import main

CLASSES = ("astronaut", "space", "texture")
# 64 px crops keep a GoogLeNet step near 0.1 s on 2 cores; the graph is the full one.
FAST = ["--device", "cpu", "--image-size", "64", "--batch-size", "9", "--workers", "2"]


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


def test_overfits_tiny_set(tiny_root: Path, tmp_path: Path) -> None:
    """GoogLeNet learns three classes well above chance (1/3) within 60 steps, seed fixed."""
    out = tmp_path / "run"
    code = main(["--data", str(tiny_root), *FAST, "--epochs", "20", "--lr", "3", "--warmup-epochs", "1",
                 "--out", str(out), "--log-every", "5"])
    assert code == 0
    epochs = _rows(out / "epochs.csv")
    assert len(epochs) == 20 and int(epochs[-1]["step"]) == 60
    best_train = max(float(row["train_top1"]) for row in epochs[-5:])
    assert best_train >= 0.7, f"train top-1 stayed at {best_train}"
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])
    assert all(int(row["val_images"]) == 9 for row in epochs)


def test_resume_continues_the_same_losses(tiny_root: Path, tmp_path: Path) -> None:
    """Stopped after 4 steps (mid-epoch) and resumed, a run logs the same per-step losses as an
    uninterrupted one through step 8, across an epoch boundary and the mid-run evaluation."""
    common = ["--data", str(tiny_root), *FAST, "--epochs", "4", "--log-every", "1", "--seed", "5"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*common, "--max-steps", "8", "--out", str(whole)]) == 0
    assert main([*common, "--max-steps", "4", "--out", str(parts)]) == 0
    last = parts / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["step"] == 4
    assert main([*common, "--max-steps", "8", "--out", str(parts), "--resume", str(last)]) == 0
    expected, got = _losses(whole), _losses(parts)
    assert sorted(got) == sorted(expected) == list(range(1, 9))
    for step in range(1, 9):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"


def test_checkpoint_loads_into_torchvision(tiny_root: Path, tmp_path: Path) -> None:
    """The stored weights load strictly into torchvision's GoogLeNet and give the same logits."""
    out = tmp_path / "run"
    assert main(["--data", str(tiny_root), *FAST, "--epochs", "1", "--out", str(out)]) == 0
    payload = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    model = torchvision.models.googlenet(weights=None, num_classes=len(CLASSES), aux_logits=True,
                                         init_weights=False)
    model.load_state_dict(payload["model"])  # strict: every key matches, none left over
    assert payload["classes"] == list(CLASSES)
    assert payload["config"]["image_size"] == 64
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, len(CLASSES)) and torch.isfinite(logits).all()


def _torchrun(tiny_root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """python -m train under torchrun: 2 CPU processes joined through gloo."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "--data", str(tiny_root), "--device", "cpu", "--image-size", "64",
           "--batch-size", "4", "--workers", "1", "--out", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_gloo_run_counts_val_once(tiny_root: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) trains, and eval sees each of the 9 val images once."""
    out = tmp_path / "ddp"
    done = _torchrun(tiny_root, out, "--epochs", "2")
    assert "ranks: 2" in done.stdout
    epochs = _rows(out / "epochs.csv")  # rank 0 alone writes
    assert [int(row["val_images"]) for row in epochs] == [9, 9]
    # 27 images over 2 ranks: shards of 13 and 14, 3 full batches of 4 on each.
    assert [int(row["step"]) for row in epochs] == [3, 6]


def test_two_process_resume_continues_the_same_losses(tiny_root: Path, tmp_path: Path) -> None:
    """Under DDP every rank's loader position and RNG are saved: a 2-process run stopped after
    2 steps and resumed logs the same losses through step 5 (past an epoch end) as one that ran on."""
    common = ["--epochs", "3", "--log-every", "1", "--seed", "4"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _torchrun(tiny_root, whole, *common, "--max-steps", "5")
    _torchrun(tiny_root, parts, *common, "--max-steps", "2")
    last = parts / "checkpoints" / "last.pt"
    assert len(torch.load(last, weights_only=True)["loader_state"]) == 2
    _torchrun(tiny_root, parts, *common, "--max-steps", "5", "--resume", str(last))
    expected, got = _losses(whole), _losses(parts)
    assert sorted(got) == sorted(expected) == list(range(1, 6))
    for step in range(1, 6):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"


def test_resume_with_other_settings_is_refused(tiny_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Resuming with another batch size would not continue the same sample sequence: refused."""
    out = tmp_path / "run"
    common = ["--data", str(tiny_root), *FAST, "--epochs", "1", "--out", str(out)]
    assert main([*common, "--max-steps", "1"]) == 0
    capsys.readouterr()
    code = main([*common, "--batch-size", "8", "--resume", str(out / "checkpoints" / "last.pt")])
    assert code == 2
    assert "was written with --batch-size 9, this run has 8" in capsys.readouterr().err


def test_sigterm_saves_and_exits_zero(tiny_root: Path, tmp_path: Path) -> None:
    """SIGTERM mid-run: the step finishes, a checkpoint is written, the exit code is 0."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "train", "--data", str(tiny_root), *FAST, "--epochs", "500",
           "--log-every", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = out / "steps.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (steps.exists() and len(_rows(steps)) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout and "--resume" in stdout
    payload = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert payload["step"] >= 2 and payload["loader_state"]


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
    ],
)
def test_bad_arguments_name_the_flag(tiny_root: Path, args: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """argparse rejects each bad value with the flag and the accepted values."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tiny_root), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gpu_without_cuda_suggests_cpu(tiny_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device gpu on a machine without CUDA fails at once and suggests --device cpu."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tiny_root), "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_missing_data_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data root without train/ gives one error line naming it, no traceback."""
    code = main(["--data", str(tmp_path), *FAST, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'train'}" in err and "Traceback" not in err


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


def test_bad_files_skipped_on_request(tiny_root: Path, tmp_path: Path) -> None:
    """--on-bad-file skip leaves the bad files out and trains on the rest."""
    root = _with_bad_files(tiny_root, tmp_path)
    out = tmp_path / "run"
    code = main(["--data", str(root), *FAST, "--epochs", "1", "--on-bad-file", "skip", "--out", str(out)])
    assert code == 0
    assert json.loads((out / "config.json").read_text())["steps_per_epoch"] == 3  # 27 good // 9


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"],
                         ids=["empty", "text", "truncated"])
def test_bad_resume_file_is_a_clear_error(tiny_root: Path, tmp_path: Path, content: bytes | str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An empty, foreign or truncated --resume file is refused by name, without a pickle trace."""
    path = tmp_path / "last.pt"
    if content == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}, "step": 1}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    code = main(["--data", str(tiny_root), *FAST, "--resume", str(path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"checkpoint {path} is unreadable" in err and "Traceback" not in err


def test_foreign_torch_file_is_refused(tiny_root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A valid torch file that is not our checkpoint (e.g. bare weights) names what is missing."""
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    code = main(["--data", str(tiny_root), *FAST, "--resume", str(path), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "was not written by python -m train (missing" in capsys.readouterr().err


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing the new file and renaming it leaves last.pt whole and loadable."""
    path = tmp_path / "checkpoints" / "last.pt"
    save_atomic({"step": 1, "weights": torch.ones(3)}, path)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt("killed before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "last.pt"]
    assert leftovers and all(name.startswith(".last.pt.tmp-") for name in leftovers)
    assert torch.load(path, weights_only=True)["step"] == 1


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_gpu_run_with_amp_reports_idle(tiny_root: Path, tmp_path: Path, amp: str) -> None:
    """On a GPU: nvJPEG loader, channels_last, AMP; the epoch row has GPU idle %."""
    out = tmp_path / amp
    code = main(["--data", str(tiny_root), "--device", "gpu", "--image-size", "64", "--batch-size", "9",
                 "--epochs", "2", "--amp", amp, "--out", str(out)])
    assert code == 0
    rows = _rows(out / "epochs.csv")
    assert len(rows) == 2 and all(row["gpu_idle_pct"] != "" for row in rows)
