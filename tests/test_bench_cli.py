"""Every bad command-line argument is refused with its name and the accepted values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.data import load_jpeg_folder


@pytest.mark.parametrize(("argv", "expected"), [
    (["--backends", "naive,fast"], ["--backends", "naive, tfdata, torch-pil", "'naive,fast'"]),
    (["--workloads", "inference"], ["--workloads", "seed, train, eval"]),
    (["--batch-size", "0"], ["--batch-size", "[1, 4096]"]),
    (["--repeats", "2"], ["--repeats", "[3, 100]"]),
    (["--max-workers", "x"], ["--max-workers", "integer"]),
    (["--device", "tpu"], ["--device", "'auto', 'cpu', 'cuda'"]),
    (["--data", "/no/such/dir"], ["--data", "ImageFolder"]),
    (["report", "--out", "/no/such/dir"], ["--out", "not a directory"]),
    (["soak", "--epochs", "1"], ["--epochs", "[3, 100000]"]),
    (["soak", "--device", "tpu"], ["--device", "'auto', 'cpu', 'gpu'"]),
])
def test_bad_argument_names_itself(argv: list[str], expected: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_report_without_results_says_what_to_run(tmp_path: Path, capsys) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "python -m bench --out" in capsys.readouterr().err


def test_non_jpeg_data_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.png").write_bytes(b"\x89PNG")
    assert main(["--data", str(tmp_path), "--backends", "naive"]) == 2
    assert "not JPEG" in capsys.readouterr().err


def test_help_lists_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "(default: 3)" in capsys.readouterr().out


def _with_truncated_jpeg(train_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(train_root, root)
    good = next((root / "cat").iterdir())
    (root / "cat" / "cut.jpg").write_bytes(good.read_bytes()[:1500])
    return root


def test_bad_jpeg_stops_the_run_before_any_job(train_root: Path, tmp_path: Path, capsys) -> None:
    """A file that would kill the DALI backends is named before anything is measured."""
    root = _with_truncated_jpeg(train_root, tmp_path)
    assert main(["--quick", "--data", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cat/cut.jpg" in err and "--on-bad-file skip" in err
    assert not (tmp_path / "out").exists()


def test_bad_jpeg_skipped_on_request(train_root: Path, tmp_path: Path) -> None:
    """With skip, every backend reads the same verified list, without the bad file."""
    root = _with_truncated_jpeg(train_root, tmp_path)
    data = load_jpeg_folder(root, on_bad_file="skip")
    assert len(data) == len(list(root.rglob("*.jpg"))) - 1
    assert not any(f.endswith("cut.jpg") for f in data.files)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--repeats", "2"], ["--repeats", "[3, 1000]"]),
    (["--batch-size", "0"], ["--batch-size", "positive integer"]),
    (["--threads", "x"], ["--threads", "positive integer"]),
    (["--images-per-shard", "-5"], ["--images-per-shard", "positive integer"]),
])
def test_shards_vs_files_bad_argument_names_itself(argv: list[str], expected: list[str], capsys) -> None:
    from bench.shards_vs_files import main as svf_main

    with pytest.raises(SystemExit) as exit_info:
        svf_main(["--data", "unused", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_shards_vs_files_refuses_shards_of_other_images(sample_root: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    from bench.shards_vs_files import main as svf_main
    from dali_pipelines import convert_image_folder

    monkeypatch.setenv("DALI_PIPELINES_CACHE", str(tmp_path / "cache"))
    shards = tmp_path / "val-shards"
    convert_image_folder(sample_root / "val", shards, images_per_shard=10, progress=False)
    # Same image count, other files: val has 24 images; keep 24 of train's 72.
    data = tmp_path / "data"
    for cls in sorted((sample_root / "train").iterdir()):
        (data / cls.name).mkdir(parents=True)
        for jpeg in sorted(cls.iterdir())[:3]:
            shutil.copy(jpeg, data / cls.name / jpeg.name)
    assert svf_main(["--data", str(data), "--shards", str(shards), "--batch-size", "8",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "differ" in err and "--shards" in err and len(err.splitlines()) == 1


def test_shards_vs_files_converts_into_a_folder_named_by_data_root(val_root: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    import tempfile

    from bench.shards_vs_files import main as svf_main

    monkeypatch.setenv("DALI_PIPELINES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "out"
    assert svf_main(["--data", str(val_root), "--workloads", "read", "--batch-size", "8", "--threads", "1",
                     "--images-per-shard", "10", "--out", str(out)]) == 0
    (folder,) = (tmp_path / "dali-bench-shards").iterdir()
    assert folder.name.startswith("val-") and folder.name.endswith("-10")
    record = __import__("json").loads((out / "shards_vs_files.json").read_text())
    assert record["data"]["images"] == 24 and {r["format"] for r in record["results"]} == {"files", "shards"}
    assert "bench.shards_vs_files" in record["environment"]["command"]
