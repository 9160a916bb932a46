"""Every bad command-line argument is refused with its name and the accepted values."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main


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
