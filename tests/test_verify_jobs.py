"""One verification per job: the verify command and training share one cache, and under torchrun
rank 0 verifies while every other rank applies its verdict without reading a file."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from dali_pipelines import DatasetError, prepare_data, scan_image_folder, verify_data
from dali_pipelines.cli import main
from dali_pipelines.config import default_cache_dir
from dali_pipelines.verify import judge_data
from tests.jpeg_kinds import jpeg, photo


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    """Two classes of good JPEGs, one of them with two files DALI cannot decode."""
    root = tmp_path / "data"
    for name in ("a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg(photo(40, 30)))
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "cut.jpg").write_bytes(jpeg(photo(40, 30))[:200])
    return root


def test_verify_command_and_training_share_one_cache(mixed_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """"verify, then train" reads each file once: the command keeps its results where training
    looks ($DALI_PIPELINES_CACHE here); --no-cache keeps nothing."""
    monkeypatch.setenv("DALI_PIPELINES_CACHE", str(tmp_path / "cache"))
    assert main(["verify", str(mixed_root), "--no-cache"]) == 1
    assert not (tmp_path / "cache").exists()
    assert main(["verify", str(mixed_root)]) == 1
    assert main(["verify", str(mixed_root)]) == 1
    assert "(6 results from the cache in" in capsys.readouterr().out.splitlines()[-2]
    report = verify_data(scan_image_folder(mixed_root), cache_dir=default_cache_dir())  # what training runs
    assert (report.checked, report.cached, len(report.bad)) == (0, 6, 2)


def test_a_verdict_leaves_out_the_same_files_without_reading_any(mixed_root: Path, tmp_path: Path) -> None:
    """What rank 0 decides reaches another rank as a small picklable verdict; applied to that
    rank's own scan it gives the same files, even with every file gone by then."""
    verdict = judge_data(scan_image_folder(mixed_root), on_bad_file="skip", cache_dir=None)
    assert sorted(name for name, _ in verdict.skipped) == ["b/cut.jpg", "b/empty.jpg"]
    expected = prepare_data(scan_image_folder(mixed_root), on_bad_file="skip", cache_dir=None)
    moved = tmp_path / "elsewhere" / "data"  # another node mounts the data at another path
    shutil.copytree(mixed_root, moved)
    other_rank = scan_image_folder(moved)
    shutil.rmtree(moved / "a")
    shutil.rmtree(moved / "b")
    applied = pickle.loads(pickle.dumps(verdict)).apply(other_rank)
    assert [Path(f).relative_to(moved) for f in applied.files] == [
        Path(f).relative_to(mixed_root) for f in expected.files]
    assert applied.labels == expected.labels
    (mixed_root / "a" / "3.jpg").write_bytes(jpeg(photo(40, 30)))  # a rank that sees other files
    with pytest.raises(DatasetError, match="differ from those rank 0 verified"):
        verdict.apply(scan_image_folder(mixed_root))


def _rank(rank: int, port: int, root: str, cache: str, results: Any) -> None:
    """One torchrun-like process: joins a 2-process gloo group and runs training's verification."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), DALI_PIPELINES_CACHE=cache)
    from train.config import TrainConfig
    from train.data import verified
    from train.distributed import init_distributed, shutdown

    ctx = init_distributed("cpu")
    try:
        (clean,) = verified(TrainConfig(data=root, on_bad_file="skip"), ctx, [scan_image_folder(root)],
                            list_seeds=[None])
        results.put((rank, clean.files))
    finally:
        shutdown(ctx)


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_verifies(mixed_root: Path, tmp_path: Path) -> None:
    """Rank 1's cache folder cannot even be created: had it verified, it would have failed. It
    trains on the files rank 0 kept, and rank 0 wrote the reader list before rank 1 went on."""
    (tmp_path / "no-folder").write_text("a file where rank 1's cache folder would be")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("forkserver")  # one fresh process imports what both ranks need, once
    ctx.set_forkserver_preload(["train.data", "train.distributed"])
    results = ctx.Queue()
    caches = [str(tmp_path / "cache"), str(tmp_path / "no-folder" / "cache")]
    procs = [ctx.Process(target=_rank, args=(r, port, str(mixed_root), caches[r], results)) for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    got = dict(results.get(timeout=5) for _ in range(2))
    assert got[0] == got[1] and len(got[0]) == 4
    cache = tmp_path / "cache"
    assert list(cache.glob("verify-*.sqlite")) and list(cache.glob("reader-lists/*.txt"))
