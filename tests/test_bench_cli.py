"""Every bad argument is refused before any work, with its name and the fix; help is complete."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest
import torch

from bench.cli import get_args_parser, main
from bench.data import capped_shards_for, load_jpeg_folder, shards_for
from bench.records import Settings
from bench.sweep import plan
from dali_pipelines import DatasetError, ImageFolderData

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the messages of a machine without a GPU")


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """stderr of a refused command (exit status 2, whichever layer refused it)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["--backends", "naive,fast"], ["--backends", "unknown name 'fast' in 'naive,fast'", "naive, tfdata"]),
    (["--workloads", "train,infer,speed"], ["--workloads", "unknown names 'infer', 'speed'"]),
    (["--workloads", "inference"], ["--workloads", "resize, train, train-aug, eval"]),
    (["--sections", "throughput,speed"], ["--sections", "throughput, scaling", "'throughput,speed'"]),
    (["--batch-size", "0"], ["--batch-size", "[1, 4096]"]),
    (["--repeats", "2"], ["--repeats", "[3, 100]"]),
    (["--repeat-s", "-1"], ["--repeat-s", ">= 0"]),
    (["--max-workers", "x"], ["--max-workers", "integer"]),
    (["--device", "cuda"], ["--device", "'cpu', 'gpu'"]),
    (["--e2e-model", "vgg16"], ["--e2e-model", "'googlenet', 'resnet50'"]),
    (["--data", "/no/such/dir"], ["--data", "not one"]),
    (["--sections", "scale", "--scale-files", "10,100"], ["--scale-files", "at least 100", "'10,100'"]),
    (["--scale-files", "1000"], ["--scale-files is read only by the scale section"]),
    (["report", "/no/such/dir"], ["DIR", "not one"]),
])
def test_bad_argument_names_itself(argv: list[str], expected: list[str], capsys) -> None:
    err = _refused(argv, capsys)
    for text in expected:
        assert text in err


def test_out_that_is_a_file_is_refused_before_the_data_is_read(tmp_path: Path, capsys) -> None:
    """The data here would fail verification; the --out problem is reported first, in one line."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    (tmp_path / "data" / "cls").mkdir(parents=True)
    (tmp_path / "data" / "cls" / "a.png").write_bytes(b"\x89PNG")
    err = _refused(["--data", str(tmp_path / "data"), "--out", str(afile)], capsys)
    fix = "pass --out with a folder you can write to"
    assert err.strip() == f"error: --out {afile} is a file, not a folder; {fix}"


def test_out_under_a_file_cannot_be_created(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    err = _refused(["--backends", "naive", "--out", str(tmp_path / "afile" / "results")], capsys)
    assert "cannot be created" in err and str(tmp_path / "afile") in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_out_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        err = _refused(["--backends", "naive", "--out", str(out)], capsys)
    finally:
        out.chmod(0o700)
    assert f"--out {out} is not writable" in err


@NO_GPU
@pytest.mark.parametrize(("argv", "expected"), [
    (["--backends", "naive,dali-gpu"], "--backends: dali-gpu needs a CUDA GPU and none is visible"),
    (["--backends", "torchvision-gpu", "--device", "cpu"], "torchvision-gpu needs a CUDA GPU"),
    (["--device", "gpu"], "--device gpu needs a CUDA GPU and none is visible; use --device cpu"),
    (["--sections", "throughput,e2e"], "--sections e2e needs --device gpu"),
    (["--sections", "hw-decoder,e2e"], "--sections hw-decoder,e2e needs --device gpu"),
])
def test_gpu_arguments_without_a_gpu_are_refused_before_any_work(argv: list[str], expected: str,
                                                                 tmp_path: Path, capsys) -> None:
    err = _refused([*argv, "--out", str(tmp_path / "out")], capsys)
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing made, nothing measured


def test_shards_flag_needs_the_shards_section(tmp_path: Path, capsys) -> None:
    err = _refused(["--sections", "throughput", "--shards", str(tmp_path)], capsys)
    assert "--shards is read only by the shards section" in err


def test_report_without_results_says_what_to_run(tmp_path: Path, capsys) -> None:
    err = _refused(["report", str(tmp_path)], capsys)
    assert f"python -m bench --out {tmp_path}" in err


def test_report_ignores_run_files_of_an_older_format(tmp_path: Path, capsys) -> None:
    (tmp_path / "cpu-2core-2026-11-25.json").write_text('{"kind": "run", "results": []}')
    assert "older formats are not read" in _refused(["report", str(tmp_path), "--json"], capsys)


def test_non_jpeg_data_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.png").write_bytes(b"\x89PNG")
    assert "not JPEG" in _refused(["--data", str(tmp_path), "--backends", "naive"], capsys)


def _with_truncated_jpeg(train_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(train_root, root)
    good = next((root / "cat").iterdir())
    (root / "cat" / "cut.jpg").write_bytes(good.read_bytes()[:1500])
    return root


def test_bad_jpeg_stops_the_run_before_any_job(train_root: Path, tmp_path: Path, capsys) -> None:
    """A file that would kill the DALI backends is named before anything is measured."""
    root = _with_truncated_jpeg(train_root, tmp_path)
    err = _refused(["--quick", "--data", str(root), "--out", str(tmp_path / "out")], capsys)
    assert "cat/cut.jpg" in err and "--on-bad-file skip" in err
    assert not (tmp_path / "out").exists()


def test_bad_jpeg_skipped_on_request(train_root: Path, tmp_path: Path) -> None:
    """With skip, every backend reads the same verified list, without the bad file."""
    root = _with_truncated_jpeg(train_root, tmp_path)
    data = load_jpeg_folder(root, on_bad_file="skip")
    assert len(data) == len(list(root.rglob("*.jpg"))) - 1
    assert not any(f.endswith("cut.jpg") for f in data.files)


def _all_actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {n}", a) for n, a in _all_actions(sub)]
        else:
            found.append(("/".join(action.option_strings) or action.dest, action))
    return found


def test_every_flag_of_every_command_has_help() -> None:
    missing = [name for name, action in _all_actions(get_args_parser())
               if not action.help or action.help == argparse.SUPPRESS]
    assert not missing


def test_top_level_help_shows_the_run_options_plainly(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--quick", "--data", "--sections", "--backends", "--out", "report"):
        assert flag in out
    assert "dali-ref" in out and "(default: 3)" in out
    assert "``" not in out
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    report_help = capsys.readouterr().out
    assert "--json" in report_help and "``" not in report_help


@pytest.mark.gpu
def test_gpu_backend_with_device_cpu_is_refused(tmp_path: Path, capsys) -> None:
    err = _refused(["--backends", "dali-gpu", "--device", "cpu", "--out", str(tmp_path / "out")], capsys)
    assert "dali-gpu decodes on the GPU: run with --device gpu" in err


def test_images_with_data_is_refused(train_root: Path, tmp_path: Path, capsys) -> None:
    err = _refused(["--data", str(train_root), "--images", "100", "--out", str(tmp_path / "out")], capsys)
    assert "--images sizes the sample set made without --data" in err


def test_shards_conversion_without_room_is_refused_before_converting(tmp_path: Path) -> None:
    """A sparse file twice the free space stands for a data set that cannot be converted here."""
    (tmp_path / "cls").mkdir()
    huge = tmp_path / "cls" / "huge.jpg"
    with huge.open("wb") as f:
        try:
            f.truncate(2 * shutil.disk_usage(tmp_path).free + 2**30)
        except OSError:
            pytest.skip("this file system cannot hold a sparse file that large")
    data = ImageFolderData(root=tmp_path, files=(str(huge),), labels=(0,), classes=("cls",))
    with pytest.raises(DatasetError, match=r"needs about .* GiB; .* GiB are free there"):
        shards_for(data, None, tmp_path / "shards")
    assert not (tmp_path / "shards").exists()


def test_capped_section_plans_the_cpu_graph_over_each_cap(val_root: Path, tmp_path: Path) -> None:
    """One job per source, each a conversion of the same images (here one cap, 24 images)."""
    settings = Settings(sections=("capped",), backends=("dali-cpu", "dali-ref"), workloads=("train",),
                        device="cpu", batch_size=8, max_workers=2)
    jobs = plan(settings)["capped"]
    assert [(j.backend, j.source) for j in jobs] == [("dali-cpu", "uncapped"), ("dali-cpu", "capped-512"),
                                                     ("dali-cpu", "capped-384"), ("dali-cpu", "capped-256")]
    sources = capped_shards_for(load_jpeg_folder(val_root), (256,), tmp_path)
    assert list(sources) == ["uncapped", "capped-256"]
    assert len(sources["uncapped"]) == len(sources["capped-256"]) == 24
    assert sum(p.stat().st_size for p in sources["capped-256"].root.glob("*.tar")) < sum(
        p.stat().st_size for p in sources["uncapped"].root.glob("*.tar"))
