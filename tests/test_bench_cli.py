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
