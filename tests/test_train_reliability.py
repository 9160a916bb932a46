"""Nothing wrong passes silently: damaged checkpoints, a diverged loss, data gone mid-run, a full
disk, a failed set-up, --overwrite's reach, changed data on resume, and the messages of each.
Real runs on the CPU fallback (real DALI, torch, JPEGs, a real tmpfs), in this process unless a
signal would end it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from run_records import read_rows

from dali_pipelines import scan_image_folder
from dali_pipelines.sources import convert_image_folder, open_shards
from dali_pipelines.sources.identity import data_identity
from train.checkpoint import load_checkpoint
from train.cli import main
from train.rundir import LOCK_NAME, RunDir

CLASSES = ("astronaut", "space", "texture")
FAST = ["--device", "cpu", "--image-size", "32", "--batch-size", "9", "--workers", "2"]


@pytest.fixture(scope="module")
def data_root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of the sample set: 27 train JPEGs (3 steps of 9), 9 val."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    for split in ("train", "val"):
        for name in CLASSES:
            shutil.copytree(sample_root / split / name, root / split / name)
    return root


def _run(args: list[str], *, during: Callable[[], None] | None = None) -> tuple[int, str]:
    """``python -m train ARGS`` in this process, with ``during`` in a thread beside it; returns the
    exit code and what it printed to stderr."""
    worker = threading.Thread(target=during, daemon=True) if during else None
    if worker:
        worker.start()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    if worker:
        worker.join(timeout=60)
    return code, err.getvalue()


def _error_line(err: str) -> str:
    """The one error line; no traceback beside it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _wait_for(ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.01)


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# --- data gone mid-run (and the checkpoints it leaves, used below) -------------------------------


@pytest.fixture(scope="module")
def data_gone_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A run (save every 2 steps) whose training files are all deleted once it has taken a step.
    DALI has read epoch 0 ahead, so the failure comes later, after last.pt, previous.pt (an earlier
    step) and best.pt (epoch 0's end) were written."""
    base = tmp_path_factory.mktemp("gone")
    data, out = base / "data", base / "run"
    shutil.copytree(data_root, data)

    def delete_training_files() -> None:
        _wait_for(lambda: (out / "steps.csv").exists() and len(read_rows(out / "steps.csv")) >= 1)
        for image in (data / "train").glob("*/*"):
            image.unlink()

    code, err = _run(["--data", str(data), *FAST, "--epochs", "3", "--max-steps", "9", "--save-every", "2",
                      "--log-every", "1", "--out", str(out)], during=delete_training_files)
    return {"code": code, "err": err, "out": out, "data": data}


def test_unreadable_data_stops_the_run_in_one_line(data_gone_run: dict) -> None:
    """A loader failing mid-epoch: one line naming the file DALI could not read, the last good
    checkpoint kept whole, and the command that resumes once the data is back."""
    out, data = data_gone_run["out"], data_gone_run["data"]
    assert data_gone_run["code"] == 2
    line = _error_line(data_gone_run["err"])
    assert "error: the training data can no longer be read (epoch " in line
    named = line.split(f"{data / 'train'}/")[1].split(";")[0]
    assert named.endswith(".jpg") and not (data / "train" / named).exists()  # DALI's message names it
    last = out / "checkpoints" / "last.pt"
    step = load_checkpoint(last)["step"]
    assert step >= 3 and load_checkpoint(out / "checkpoints" / "previous.pt")["step"] < step
    assert f"the last good checkpoint, {last} (step {step}), is kept as it was" in line
    assert line.endswith(f"restore the data (or its storage), then resume with: {sys.executable} -m train "
                         f"--resume {last}") or line.endswith(f"-m train --resume {last}")
    assert not _temporaries(out / "checkpoints")


# --- checkpoints verified on load ---------------------------------------------------------------


def _zero_inside_a_tensor(path: Path) -> None:
    """1 MiB of zeros in the middle of the largest tensor's bytes: the zip structure stays valid."""
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    assert largest.file_size > 4 * 2**20
    with open(path, "r+b") as handle:
        handle.seek(largest.header_offset + largest.file_size // 2)
        handle.write(bytes(2**20))


@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_damaged_last_checkpoint_is_refused_naming_the_intact_ones(data_gone_run: dict, tmp_path: Path,
                                                                   damage: str) -> None:
    """A last.pt of the right size with 1 MiB zeroed inside a tensor (which torch.load reads without
    a word) fails its CRC-32 check; a truncated one is called truncated. Either way the message
    offers previous.pt and best.pt with their steps."""
    run = tmp_path / "run"
    shutil.copytree(data_gone_run["out"] / "checkpoints", run / "checkpoints")
    folder = run / "checkpoints"
    steps = {name: torch.load(folder / name, weights_only=True, mmap=True)["step"]
             for name in ("previous.pt", "best.pt")}
    last = folder / "last.pt"
    if damage == "zeroed":
        _zero_inside_a_tensor(last)
        assert torch.load(last, weights_only=True)["step"] >= 3  # what a resume used to take without a word
        reason = "damaged: archive/data/"
    else:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
        reason = "truncated: a torch archive whose end is missing"
    code, err = _run(["--resume", str(run)])
    assert code == 2
    line = _error_line(err)
    assert line.startswith(f"error: --resume {last}: {reason}"), line
    if damage == "zeroed":
        assert "is not what torch's writer recorded (Bad CRC-32 for file" in line
    assert line.endswith(f"use --resume {folder / 'previous.pt'} (step {steps['previous.pt']}) or "
                         f"--resume {folder / 'best.pt'} (step {steps['best.pt']})")


def test_resume_of_a_run_directory_without_last_pt_names_what_it_has(data_gone_run: dict,
                                                                     tmp_path: Path) -> None:
    """--resume RUN_DIR: with best.pt alone, that file is offered; with no checkpoint at all, the
    run is to be started again (not "pass RUN_DIR")."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(data_gone_run["out"] / "checkpoints" / "best.pt", run / "checkpoints" / "best.pt")
    code, err = _run(["--resume", str(run)])
    assert code == 2
    best = run / "checkpoints" / "best.pt"
    assert f"no checkpoints/last.pt; resume from --resume {best}" in _error_line(err)
    (run / "checkpoints" / "best.pt").unlink()
    shutil.copy(data_gone_run["out"] / "config.json", run / "config.json")
    code, err = _run(["--resume", str(run)])
    line = _error_line(err)
    assert code == 2 and "this run saved no checkpoint" in line and f"--out {run} --overwrite" in line


# --- the data's identity on resume --------------------------------------------------------------


def test_data_identity_survives_moving_and_names_changes(data_root: Path, tmp_path: Path) -> None:
    """The same files elsewhere have the same identity; one file swapped for another (same count)
    is named, removed and added."""
    moved = tmp_path / "moved"
    shutil.copytree(data_root / "train", moved)
    saved = data_identity(scan_image_folder(data_root / "train")).record()
    assert data_identity(scan_image_folder(moved)).differences(saved) is None
    (moved / "space" / "space_00001.jpg").unlink()
    shutil.copy(moved / "space" / "space_00002.jpg", moved / "space" / "space_new.jpg")
    change = data_identity(scan_image_folder(moved)).differences(saved)
    assert change == ("1 file(s) removed (space/space_00001.jpg), 1 file(s) added (space/space_new.jpg); "
                      "27 files then, 27 now")


def test_shard_identity_is_the_manifests_checksums(data_root: Path, tmp_path: Path) -> None:
    """Shards are identified by name, sample count and the sha256 to-shards recorded: a moved copy
    is the same data, a list without its first shard names that shard."""
    shards = convert_image_folder(data_root / "train", tmp_path / "shards", images_per_shard=10,
                                  progress=False)
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    saved = data_identity(shards)
    assert [entry[2] for entry in saved.entries] == [record["sha256"] for record in manifest["shards"]]
    shutil.copytree(tmp_path / "shards", tmp_path / "moved")
    assert data_identity(open_shards(tmp_path / "moved")).differences(saved.record()) is None
    fewer = dataclasses.replace(shards, shards=shards.shards[1:], index_files=shards.index_files[1:],
                                shard_samples=shards.shard_samples[1:], shard_bytes=shards.shard_bytes[1:],
                                shard_sha256=shards.shard_sha256[1:])
    assert data_identity(fewer).differences(saved.record()) == \
        f"1 shard(s) removed ({Path(shards.shards[0]).name}); 3 shards then, 2 now"


def test_resume_on_changed_data_of_the_same_count_is_refused(data_gone_run: dict, data_root: Path,
                                                             tmp_path: Path) -> None:
    """A resume whose --data has the same number of files but not the same files is refused before
    any step, naming the files; nothing in the run directory changes."""
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(data_gone_run["out"], run)
    shutil.copytree(data_root, data)
    (data / "train" / "texture" / "texture_00002.jpg").unlink()
    shutil.copy(data / "train" / "texture" / "texture_00001.jpg", data / "train" / "texture" / "extra.jpg")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*"))
    code, err = _run(["--resume", str(run), "--data", str(data)])
    assert code == 2
    line = _error_line(err)
    assert f"--data {data} is not the training data of the saved run (1 file(s) removed " \
           "(texture/texture_00002.jpg), 1 file(s) added (texture/extra.jpg)" in line
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*")) == before


# --- a diverged loss ------------------------------------------------------------------------------


def test_non_finite_loss_stops_before_it_is_saved(data_root: Path, tmp_path: Path) -> None:
    """--lr 1e30: the first step's weights are still finite and saved; the second step's loss is
    NaN, found at its log step, and the run stops without touching last.pt, saying why."""
    out = tmp_path / "run"
    code, err = _run(["--data", str(data_root), *FAST, "--epochs", "2", "--lr", "1e30", "--save-every", "1",
                      "--log-every", "1", "--out", str(out)])
    assert code == 2
    line = _error_line(err)
    last = out / "checkpoints" / "last.pt"
    assert "the training loss became nan by step 2: the run diverged" in line
    assert f"the last good checkpoint, {last} (step 1), is kept as it was" in line and "lower --lr" in line
    payload = load_checkpoint(last)
    assert payload["step"] == 1 and all(t.isfinite().all() for t in payload["model"].values())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]


# --- a full disk ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(folder: Path, size_mib: int) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}M", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_free_space_check_counts_every_file_a_save_needs(data_root: Path, tmp_path: Path) -> None:
    """A real 200 MiB file system holds two checkpoints, not the four files a save needs at once:
    refused before the data is read, with the sizes."""
    with _tmpfs(tmp_path / "small", 200) as small:
        code, err = _run(["--data", str(data_root), *FAST, "--out", str(small / "run")])
    assert code == 2
    line = _error_line(err)
    assert "a run's saves need about" in line and "(last.pt, previous.pt, best.pt and the temporary" in line
    need = int(line.split("need about ")[1].split(" MiB")[0])
    each = int(line.split("about ")[2].split(" MiB each")[0])
    assert need == pytest.approx(4 * each, abs=2) and 200 < need < 400


def test_full_disk_at_a_save_keeps_the_last_checkpoint(data_root: Path, tmp_path: Path) -> None:
    """The disk fills (another writer) once the first last.pt is saved: the next save fails with
    one line naming the folder and the fix, every step's row is in steps.csv (flushed one by one),
    no temporary is left, and last.pt is whole."""
    with _tmpfs(tmp_path / "disk", 330) as disk:
        out = disk / "run"

        def fill_the_disk() -> None:
            _wait_for((out / "checkpoints" / "last.pt").exists)
            with open(disk / "filler", "wb", buffering=0) as filler:  # unbuffered: its close writes nothing
                with contextlib.suppress(OSError):  # all the free space at once, then what is left
                    os.posix_fallocate(filler.fileno(), 0, shutil.disk_usage(disk).free)
                with contextlib.suppress(OSError):
                    while True:
                        filler.write(bytes(4096))

        code, err = _run(["--data", str(data_root), *FAST, "--epochs", "2", "--max-steps", "6",
                          "--save-every", "1", "--log-every", "1", "--out", str(out)], during=fill_the_disk)
        assert code == 2
        line = _error_line(err)
        folder = out / "checkpoints"
        assert f"cannot write to {folder} (No space left on device" in line
        assert f"free space in {folder}, then resume with: " in line and "--out DIR" in line
        saved = load_checkpoint(folder / "last.pt")["step"]
        assert [int(row["step"]) for row in read_rows(out / "steps.csv")] == list(range(1, saved + 2))
        assert f"{folder / 'last.pt'} (step {saved}), is kept as it was" in line
        assert not _temporaries(folder)


def test_claiming_a_directory_removes_temporaries_of_its_own_files(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """What a kill -9 during a save or a record rewrite leaves (.NAME.tmp-PID of a run file) goes
    when the next run claims the directory, with a log line; other hidden files stay."""
    (tmp_path / "checkpoints").mkdir()
    left = [tmp_path / "checkpoints" / ".last.pt.tmp-4242", tmp_path / ".steps.csv.tmp-4242"]
    for path in left:
        path.write_bytes(b"half a file")
    (tmp_path / ".mine.tmp-1").write_text("not the run's\n")
    with caplog.at_level(logging.WARNING, logger="train.rundir"):
        RunDir.claim(tmp_path, resume_run_id=None, overwrite=False).release()
    assert not any(path.exists() for path in left) and (tmp_path / ".mine.tmp-1").exists()
    assert "removed 2 temporary file(s) an interrupted write left" in caplog.text
    assert ".steps.csv.tmp-4242" in caplog.text and "checkpoints/.last.pt.tmp-4242" in caplog.text


# --- set-up failures, --overwrite ------------------------------------------------------------------


def test_failed_setup_leaves_nothing_that_blocks_the_rerun(data_root: Path, tmp_path: Path) -> None:
    """A batch larger than the data fails after the records were opened: they are removed again, so
    the corrected command is not refused as an earlier run."""
    out = tmp_path / "run"
    code, err = _run(["--data", str(data_root), *FAST[:4], "--batch-size", "64", "--out", str(out)])
    assert code == 2 and "lower --batch-size" in _error_line(err)
    assert list(out.iterdir()) == []
    RunDir.claim(out, resume_run_id=None, overwrite=False).release()  # a new run may start here


def test_overwrite_removes_only_what_a_run_writes(data_gone_run: dict, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """--overwrite deletes the run's named files and TensorBoard event files, keeps anything else
    (in its folders too) and names what it kept."""
    run = tmp_path / "run"
    shutil.copytree(data_gone_run["out"], run)
    mine = [run / "notes.txt", run / "checkpoints" / "imagenet-baseline.pt", run / "tensorboard" / "README"]
    for path in mine:
        path.write_text("mine\n")
    with caplog.at_level(logging.WARNING, logger="train.rundir"):
        claimed = RunDir.claim(run, resume_run_id=None, overwrite=True)
        claimed.clear_previous_run()
        claimed.release()
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == \
        ["checkpoints/imagenet-baseline.pt", "notes.txt", "tensorboard/README"]
    assert "kept what a run does not write: checkpoints/imagenet-baseline.pt, notes.txt, tensorboard/README" \
        in caplog.text


# --- messages that name the real fix ------------------------------------------------------------


def test_out_inside_the_data_is_refused_naming_both(data_root: Path) -> None:
    """--out under the data tree: refused before the folder is made (it would become a class)."""
    out = data_root / "train" / "runs" / "x"
    code, err = _run(["--data", str(data_root), *FAST, "--out", str(out)])
    assert code == 2 and not out.parent.exists()
    assert f"--out {out} is inside --data {data_root}" in _error_line(err)


def test_val_class_the_training_data_lacks_is_refused_before_any_work(data_root: Path, sample_root: Path,
                                                                     tmp_path: Path) -> None:
    """A val/ with a class train/ lacks (which would fail at the first evaluation, an epoch in):
    one line naming it, before any file is read or written."""
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(data_root, data)
    shutil.copytree(sample_root / "val" / "coffee", data / "val" / "coffee")
    code, err = _run(["--data", str(data), *FAST, "--out", str(out)])
    assert code == 2 and "lacks: coffee; every validation class must be a training class" in _error_line(err)
    assert list(out.iterdir()) == []


def test_skipping_bad_files_that_empties_a_class_is_refused(data_root: Path, tmp_path: Path) -> None:
    """--on-bad-file skip where every file of a class is bad: refused before any step, naming the
    class (as an empty class folder is), not trained with a class it never sees."""
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(data_root, data)
    for image in (data / "train" / "space").iterdir():
        image.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    code, err = _run(["--data", str(data), *FAST, "--on-bad-file", "skip", "--out", str(out)])
    assert code == 2 and "Traceback" not in err
    assert f"9 of 27 files under {data / 'train'} would stop DALI:" in err
    assert "Skipping them would leave 1 class without a single file (space), which is refused" in err
    assert list(out.iterdir()) == []


def test_max_pixels_reaches_verification(data_root: Path, tmp_path: Path) -> None:
    """train has the --max-pixels that verification's message tells the user to raise."""
    code, err = _run(["--data", str(data_root), *FAST, "--max-pixels", "1000",
                      "--out", str(tmp_path / "run")])
    assert code == 2
    assert "over the limit of 1,000 (a decompression bomb?); raise --max-pixels if it is real" in err


def test_second_sigint_stops_at_once_naming_what_is_kept(data_root: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C while the first one's save runs stops at once (exit 130), and says in one
    line that nothing more was saved, which checkpoint is kept, and how to resume."""
    monkeypatch.setenv("DALI_PIPELINES_NATIVE_LOG", "raw")  # the handler writes to fd 2 itself
    out = tmp_path / "run"
    first_handled = threading.Event()

    class FirstStop(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "SIGINT received" in record.getMessage():
                first_handled.set()

    def interrupt_twice() -> None:
        _wait_for((out / "checkpoints" / "last.pt").exists)
        os.kill(os.getpid(), signal.SIGINT)
        first_handled.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    handler = FirstStop()
    logging.getLogger("train.signals").addHandler(handler)
    try:
        code, _ = _run(["--data", str(data_root), *FAST, "--epochs", "2", "--save-every", "1",
                        "--out", str(out)], during=interrupt_twice)
    finally:
        logging.getLogger("train.signals").removeHandler(handler)
    assert code == 130
    last = out / "checkpoints" / "last.pt"
    lines = [line for line in capfd.readouterr().err.splitlines() if "again: stopped at once" in line]
    assert len(lines) == 1 and lines[0].startswith("SIGINT again: stopped at once, without saving; ")
    step = load_checkpoint(last)["step"]
    assert f"{last} (step {step}) is kept; resume with: " in lines[0]
    assert not _temporaries(out / "checkpoints") and not (out / LOCK_NAME).exists()


def test_second_sigterm_says_what_is_kept_and_exits_143(tmp_path: Path) -> None:
    """The same for SIGTERM, whose second delivery ends the process (exit 143 from a shell): a real
    process, a real signal, the line before it ends."""
    script = ("import os, signal, time\n"
              "from train.signals import StopRequest\n"
              "stop = StopRequest(kept=lambda: 'RUN/checkpoints/last.pt (step 7) is kept').install()\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "assert stop.requested\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == -signal.SIGTERM
    assert "SIGTERM again: stopped at once, without saving; RUN/checkpoints/last.pt (step 7) is kept" \
        in done.stderr
