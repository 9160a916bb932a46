"""One verification per job: the verify command and training share one cache, and a verdict
applies on another rank without reading a file."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

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
