"""Training from a bucket of a real S3 server (SeaweedFS on 127.0.0.1) on the CPU path: the same
batches as from the same files on disk, loose and as shards; and a server stopped mid-epoch,
which costs one line, keeps the last checkpoint whole and resumes once it is back."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest
import torch
from run_records import step_losses

from dali_pipelines import PipelineConfig, make_loader, open_source
from train.checkpoint import load_checkpoint
from train.cli import main

CFG = PipelineConfig(batch_size=8, device="cpu", num_threads=2, crop_size=32, resize_size=36, seed=3)
# 72 train images at batch 12: 6 steps; 24 val images evaluated at the end. DALI reads 2 batches
# ahead (prefetch_queue_depth), so a server stopped after step 1 fails a read by step 4.
RUN = ["--device", "cpu", "--image-size", "32", "--batch-size", "12", "--workers", "2", "--epochs", "1",
       "--log-every", "1", "--seed", "7"]


def _batches(source: object, *, train: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = make_loader(source, CFG, train=train)  # type: ignore[arg-type]
    try:
        return list(loader)
    finally:
        loader.close()


@pytest.mark.parametrize("form", ["loose", "shards"])
def test_bucket_gives_the_batches_the_same_files_give_on_disk(s3_sample: dict, sample_root: Path,
                                                              form: str) -> None:
    """A train epoch (shuffled, cropped, flipped) and an eval pass: every image and label equal."""
    local_root = sample_root if form == "loose" else s3_sample["local_shards"]
    for split, train in (("train", True), ("val", False)):
        remote = _batches(open_source(s3_sample[form], split=split), train=train)
        local = _batches(open_source(local_root, split=split), train=train)
        assert len(remote) == len(local) == (9 if train else 3)
        for (images, labels), (disk_images, disk_labels) in zip(remote, local, strict=True):
            assert torch.equal(images, disk_images) and torch.equal(labels, disk_labels)


def _stop_when_saved(server, checkpoint: Path) -> threading.Thread:
    """Stop the server as soon as the run's first checkpoint exists (mid-epoch: step 1 of 6)."""
    def watch() -> None:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop(grace_s=0)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_server_stopped_mid_epoch_costs_one_line_and_resumes_when_back(
        s3_server, s3_sample: dict, sample_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The run fails with one line naming the endpoint, what DALI was reading and the resume
    command; the checkpoint saved before is whole; with the server back on the same port and data,
    the resume ends with the losses and weights of an uninterrupted run from the same files on disk."""
    out, disk = tmp_path / "bucket", tmp_path / "disk"
    last = out / "checkpoints" / "last.pt"
    watcher = _stop_when_saved(s3_server, last)
    try:
        code = main(["--data", s3_sample["loose"], *RUN, "--save-every", "1", "--out", str(out)])
    finally:
        watcher.join()
        s3_server.start()  # the same port and data: later tests find it as before
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert f"from the S3 endpoint {os.environ['AWS_ENDPOINT_URL']}: " in line
    # DALI names the object when a HEAD request failed, not when a ranged GET did; either way, the prefix.
    assert re.search(r"DALI failed to read (s3://data/sample/(train|val)/\S+\.jpg|an object under "
                     r"s3://data/sample/(train|val)/ \(DALI's reader does not say which\)) from", line), line
    assert "Could not connect to server" in line
    assert f"the last good checkpoint, {last} (step " in line and f"-m train --resume {last}" in line
    saved = load_checkpoint(last)
    assert 1 <= saved["step"] < 6
    assert main(["--resume", str(last), "--save-every", "100"]) == 0  # as printed; fewer saves
    assert main(["--data", str(sample_root), *RUN, "--out", str(disk)]) == 0
    expected, got = step_losses(disk), step_losses(out)
    assert sorted(got) == sorted(expected) == list(range(1, 7))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), f"step {step}"
    resumed, whole = (torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
                      for run in (out, disk))
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)
