"""Around a training run: the output checked before any work, one run per directory (lock,
--overwrite), and a resume that needs only the checkpoint (bad files, mismatches, a finished
run, the command printed at SIGINT). CPU fallback, real DALI and torch."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from run_records import read_rows

from train.checkpoint import CheckpointError, load_checkpoint
from train.cli import main
from train.resume import check_resumable, resumed_config
from train.rundir import LOCK_NAME, RunDir, RunDirError
from train.trainer import EpochMeter

CLASSES = ("astronaut", "space", "texture")
FAST = ["--device", "cpu", "--image-size", "32", "--batch-size", "9", "--workers", "2"]


@pytest.fixture(scope="module")
def tiny_root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of the sample set (27 train, 9 val JPEGs), plus two files DALI cannot
    decode under train/ that only ``--on-bad-file skip`` gets past: a run that reaches
    verification before the check under test fails with "would stop DALI" instead."""
    root = tmp_path_factory.mktemp("tiny")
    for split in ("train", "val"):
        for name in CLASSES:
            shutil.copytree(sample_root / split / name, root / split / name)
    good = next((root / "train" / "space").iterdir())
    (root / "train" / "space" / "cut.jpg").write_bytes(good.read_bytes()[:2000])
    (root / "train" / "texture" / "empty.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def stopped_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 2 epochs (3 steps each) stopped by --max-steps 2; tests that change it use a copy."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    args = ["--data", str(tiny_root), *FAST, "--epochs", "2", "--max-steps", "2", "--on-bad-file", "skip",
            "--out", str(out)]
    assert main(args) == 0
    return out


def test_bad_files_skipped_on_request(stopped_run: Path) -> None:
    """--on-bad-file skip leaves the 2 bad files out and trains on the 27 others."""
    config = json.loads((stopped_run / "config.json").read_text())
    assert config["train_files"] == 27 and config["steps_per_epoch"] == 3  # 27 // 9


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "would stop DALI" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- the output, checked before any work ---------------------------------------------------------


def test_out_that_is_a_file_is_refused_before_any_work(tiny_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming a file: one line with the path and the fix, before the data is verified."""
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    assert main(["--data", str(tiny_root), *FAST, "--out", str(afile)]) == 2
    line = _one_error_line(capsys)
    assert f"--out {afile} is a file" in line and "pass a directory" in line


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs (unwritable even for root)")
@pytest.mark.parametrize("out", ["/sys/kernel", "/sys/kernel/dali-train-test/run"], ids=["existing", "new"])
def test_unwritable_out_is_refused_before_any_work(tiny_root: Path, out: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that cannot be written (sysfs refuses even root) or created: one line, no trace."""
    assert main(["--data", str(tiny_root), *FAST, "--out", out]) == 2
    line = _one_error_line(capsys)
    assert f"--out {out}" in line and ("not writable" in line or "cannot be created" in line)
    assert "pick a writable" in line


def test_out_without_room_for_a_checkpoint_is_refused(tiny_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Free space under what a save needs at once (four checkpoints of the estimated size: weights
    + momentum): refused before the data is verified. The file system's answer is replaced here
    (test_train_reliability.py fills a real tmpfs)."""
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=5 * 2**20))
    assert main(["--data", str(tiny_root), *FAST, "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert f"--out {tmp_path / 'run'} has 5 MiB free, and a run's saves need about" in line
    each = int(line.split("about ")[2].split(" MiB each")[0])
    assert 60 < each < 100  # GoogLeNet for 3 classes: ~10M weights x 4 bytes, twice (momentum)


# --- one run per directory ----------------------------------------------------------------------


def test_new_run_into_an_old_run_is_refused(stopped_run: Path, tiny_root: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without --resume or --overwrite, a directory holding a run is left alone, and the message
    offers both ways on."""
    before = (stopped_run / "epochs.csv").read_text()
    assert main(["--data", str(tiny_root), *FAST, "--on-bad-file", "skip", "--out", str(stopped_run)]) == 2
    line = _one_error_line(capsys)
    assert f"--out {stopped_run} holds an earlier run" in line
    assert f"--resume {stopped_run / 'checkpoints' / 'last.pt'}" in line and "--overwrite" in line
    assert (stopped_run / "epochs.csv").read_text() == before


def test_overwrite_starts_clean_and_prints_plain_progress(stopped_run: Path, tiny_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--overwrite removes the earlier run's records and checkpoints (nothing else). Progress in
    a non-terminal (here: captured) stream is plain lines, without carriage returns."""
    out = tmp_path / "run"
    shutil.copytree(stopped_run, out)
    (out / "notes.txt").write_text("mine\n")
    shutil.copy(out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt")  # an earlier best
    args = ["--data", str(tiny_root), *FAST, "--epochs", "1", "--max-steps", "1", "--log-every", "1",
            "--on-bad-file", "skip", "--out", str(out), "--overwrite"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert [(r["epoch"], r["step"]) for r in read_rows(out / "epochs.csv")] == [("0", "1")]
    assert [r["step"] for r in read_rows(out / "steps.csv")] == ["1"]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    # The earlier run's best.pt is gone, and a partial epoch (1 of 3 steps) does not compete for one.
    assert not (out / "checkpoints" / "best.pt").exists()
    assert (out / "notes.txt").read_text() == "mine\n" and not (out / LOCK_NAME).exists()
    assert "epoch 0: step 1/3 (33%), loss " in captured.err and "\r" not in captured.err


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """kill -9 leaves train.lock behind; the next run takes it over and says so."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    tmp_path.joinpath(LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING, logger="train.rundir"):
        claimed = RunDir.claim(tmp_path, resume_run_id=None, overwrite=False)
    try:
        assert f"pid {dead.pid} on {socket.gethostname()}" in caplog.text
        assert "no longer running" in caplog.text
        assert json.loads(tmp_path.joinpath(LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        claimed.release()
    assert not tmp_path.joinpath(LOCK_NAME).exists()


def test_lock_without_flock_goes_by_the_recorded_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system has no flock, a live local owner still refuses a second writer."""
    def no_flock(*_args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    record = {"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier"}
    tmp_path.joinpath(LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(RunDirError, match=f"in use by pid {os.getppid()} on {socket.gethostname()}"):
        RunDir.claim(tmp_path, resume_run_id=None, overwrite=False)
    record["host"] = "elsewhere.example"
    tmp_path.joinpath(LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(RunDirError, match="if that run is over, delete"):
        RunDir.claim(tmp_path, resume_run_id=None, overwrite=False)


# --- resume: only the checkpoint ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello\n", "not a checkpoint written by python -m train"),
        (b"abc", "not a checkpoint written by python -m train"),
        ("truncated", "truncated: a torch archive whose end is missing"),
        ("corrupt", "damaged: t/data.pkl is not what torch's writer recorded (Bad CRC-32 for file"),
        ("foreign zip", "torch cannot read it (Unsupported operand 0) although every member passes"),
        ("pickled object", "holds Python objects (time.struct_time) that weights_only loading refuses"),
        ("bare weights", "not a checkpoint written by python -m train (it holds a dict of 1 entries"),
        ("old format", "checkpoint format 2 is older than this version's 3"),
    ],
)
def test_unusable_resume_file_is_one_sentence(tmp_path: Path, content: bytes | str, reason: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Any broken or foreign --resume file is refused with its name and one sentence."""
    path = tmp_path / "t.pt"
    if content == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}, "step": 1}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "corrupt":
        torch.save({"w": torch.zeros(1000)}, path)
        data = bytearray(path.read_bytes())
        data[60:200] = bytes(140)  # the archive's first local header and the pickle
        path.write_bytes(bytes(data))
    elif content == "foreign zip":  # whole (CRC-32s match), but no pickle torch can read
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("t/version", b"3\n")
            archive.writestr("t/data.pkl", b"\x00garbage")
    elif content == "pickled object":
        torch.save({"when": time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0))}, path)
    elif content == "bare weights":
        torch.save({"conv1.weight": torch.zeros(1)}, path)
    elif content == "old format":
        torch.save({"format_version": 2, "model": {}}, path)
    else:
        path.write_bytes(content)
    assert main(["--resume", str(path)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: --resume {path}: {reason}"), line


def test_resume_of_a_finished_run_says_so(stopped_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing left to train (its --max-steps reached): it says so and exits 0, touching nothing.
    (A run with all epochs done: test_train.py's overfitting run.)"""
    before = (stopped_run / "steps.csv").read_text()
    assert main(["--resume", str(stopped_run / "checkpoints" / "last.pt")]) == 0
    out = capsys.readouterr().out
    assert f"run {stopped_run} is finished at step 2 (--max-steps 2); pass a larger --max-steps" in out
    assert (stopped_run / "steps.csv").read_text() == before


def test_resume_lists_every_mismatch_at_once(stopped_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flags that would change the saved run's sample order, schedule or mixing are all named in
    one message; flags that may change (here --max-steps) are not."""
    ckpt = stopped_run / "checkpoints" / "last.pt"
    args = ["--resume", str(ckpt), "--batch-size", "8", "--seed", "3", "--epochs", "3", "--max-steps", "9",
            "--cutmix", "1", "--ema-decay", "0.99", "--val-split", "0.2"]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert f"--resume {ckpt} cannot continue its run exactly with:" in line
    for part in ("--batch-size 8 (saved: 9)", "--seed 3 (saved: 0)", "--epochs 3 (saved: 2)",
                 "--cutmix 1.0 (saved: 0.0)", "--ema-decay 0.99 (saved: 0.0)",
                 "--val-split 0.2 (saved: None)"):
        assert part in line
    assert "--max-steps" not in line.split("only")[0]


NEWER_SETTINGS = ("mixup", "cutmix", "mix_switch_prob", "mix_prob", "ema_decay", "ema_every", "ema_warmup",
                  "model", "weights", "finetune", "test_only", "opt", "clip_grad", "accum_steps",
                  "random_erase", "train_size", "eval_size", "progressive_resize")


def _older_checkpoint(stopped_run: Path, folder: Path) -> Path:
    """stopped_run's last.pt as the version before mixing, the EMA and the recipe settings (model,
    optimizer, sizes, ...) wrote it: format 3 without the ``ema`` and ``mix_rng`` keys, without
    their settings and without the aux loss in its partial epoch's sums."""
    payload = torch.load(stopped_run / "checkpoints" / "last.pt", weights_only=True)
    del payload["ema"]
    for rank in payload["ranks"]:
        del rank["mix_rng"]
        del rank["epoch_sums"]["aux_sum"]
    for name in NEWER_SETTINGS:
        del payload["config"][name]
    path = folder / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save(payload, path)
    return path


def test_checkpoint_from_before_mixing_and_ema_resumes_without_them(
        stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint written before --mixup/--cutmix/--ema-decay and the recipe settings existed is
    read with them at their defaults (its run had none of them: GoogLeNet, SGD, one size), and a
    resume may not switch them on: they would change its losses."""
    path = _older_checkpoint(stopped_run, tmp_path)
    payload = load_checkpoint(path)
    cfg = resumed_config(payload, path, {"resume": str(path)})
    assert not cfg.mixing and cfg.ema_decay == 0
    recipe = (cfg.model, cfg.opt, cfg.accum_steps, cfg.train_crop_at(1), cfg.eval_crop, cfg.random_erase)
    assert recipe == ("googlenet", "sgd", 1, 32, 32, 0.0)
    check_resumable(payload, cfg, path, world_size=1)  # nothing to object to
    sums = payload["ranks"][0]["epoch_sums"]
    meter = EpochMeter(torch.device("cpu"), sums)  # the partial epoch's sums carry on without aux_sum
    assert (meter.loss_sum.item(), meter.aux_sum.item()) == (sums["loss_sum"], 0.0)
    assert main(["--resume", str(path), "--mixup", "0.2", "--ema-decay", "0.9", "--model", "resnet18"]) == 2
    line = _one_error_line(capsys)
    assert "--mixup 0.2 (saved: 0.0)" in line and "--ema-decay 0.9 (saved: 0.0)" in line
    assert "--model resnet18 (saved: googlenet)" in line


@pytest.mark.parametrize(("setting", "missing"), [("cutmix", "ranks' mix_rng"), ("ema_decay", "ema")])
def test_checkpoint_missing_what_its_settings_need_is_refused(
        stopped_run: Path, tmp_path: Path, setting: str, missing: str) -> None:
    """Saved settings with mixing or an EMA on, but without the generator states or the
    averaged weights to continue them: refused at load, naming the missing key."""
    payload = torch.load(_older_checkpoint(stopped_run, tmp_path), weights_only=True)
    payload["config"][setting] = 0.5
    path = tmp_path / "broken.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"not a checkpoint written by python -m train .*{missing}"):
        load_checkpoint(path)


def test_resume_into_another_runs_directory_is_refused(stopped_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--out given beside --resume may move the run, but not into a directory of another run."""
    other = tmp_path / "other"
    shutil.copytree(stopped_run, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "run_id": "someoneelse"}))
    assert main(["--resume", str(stopped_run), "--max-steps", "4", "--out", str(other)]) == 2
    assert f"--out {other} holds another run (id someoneelse)" in _one_error_line(capsys)


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting (training exit code {proc.poll()})")


def _lock_owner(out: Path) -> int | None:
    try:
        return json.loads((out / LOCK_NAME).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_interrupted_run_locks_its_directory_and_resumes_as_printed(
        tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While a run trains, a second run into its --out is refused with the owner's pid. After
    SIGINT it saves and prints a resume command; that command, run exactly as printed (no
    --data, no settings), finishes the run with one row per step."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "train", "--data", str(tiny_root), *FAST, "--on-bad-file", "skip",
           "--epochs", "2", "--max-steps", "5", "--log-every", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until(lambda: _lock_owner(out) == proc.pid, proc)  # taken before the data is read
        assert main(["--data", str(tiny_root), *FAST, "--out", str(out)]) == 2
        line = _one_error_line(capsys)
        assert f"--out {out} is in use by pid {proc.pid} on {socket.gethostname()}" in line
        _wait_until(lambda: (out / "steps.csv").exists() and len(read_rows(out / "steps.csv")) >= 1, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    printed = stdout.split("resume with: ")[1].splitlines()[0]
    assert "--data" not in printed and "--resume" in printed
    done = subprocess.run(shlex.split(printed), capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [int(r["step"]) for r in read_rows(out / "steps.csv")] == list(range(1, 6))
    assert [(r["epoch"], r["step"]) for r in read_rows(out / "epochs.csv")] == [("0", "3"), ("1", "5")]
