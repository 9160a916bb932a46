"""Data sources as a user meets them: label lists, loop-safe scans of regular files only, the
stratified hold-out, one class list for train and val, and the commands that read them
(verify, to-shards, bench), on real JPEG files."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest

from bench.data import load_jpeg_folder
from dali_pipelines import (
    DatasetError,
    ImageFolderData,
    open_source,
    open_train_val,
    read_label_list,
    scan_image_folder,
)
from dali_pipelines.cli import main
from dali_pipelines.sources import labelled_sets, split_source, with_classes_of
from dali_pipelines.sources.trainval import held_out_count
from dali_pipelines.sources.webdataset import open_shards

CLASSES = ("astronaut", "space", "texture")


def _write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


# ---------------------------------------------------------------- label lists


def test_csv_lists_in_every_form_read_as_the_folder(flat: Path, tmp_path: Path) -> None:
    """Header or not, names or indices or both, CSV or TSV, paths relative to the list's folder or to
    a root: each reads as the same (file, class name) pairs as the scanned folder."""
    data = scan_image_folder(flat)
    rel = [os.path.relpath(f, tmp_path / "lists") for f in data.files]
    names = [data.classes[label] for label in data.labels]
    forms = {
        "names.csv": [[r, n] for r, n in zip(rel, names, strict=True)],
        "indices.csv": [[r, str(label)] for r, label in zip(rel, data.labels, strict=True)],
        "both.csv": [["path", "label", "class"], *[[r, str(label), n] for r, label, n in
                                                   zip(rel, data.labels, names, strict=True)]],
        "header.tsv": [["width", "class", "path"], *[["32", n, r] for r, n in zip(rel, names, strict=True)]],
    }
    for name, rows in forms.items():
        delimiter = "\t" if name.endswith("tsv") else ","
        listed = read_label_list(_write_csv(tmp_path / "lists" / name, rows, delimiter))
        by_name = [(f, listed.classes[label]) for f, label in zip(listed.files, listed.labels, strict=True)]
        expected_classes = data.classes if name != "indices.csv" else ("0", "1", "2")
        assert listed.classes == expected_classes, name
        if name != "indices.csv":
            assert by_name == list(zip(data.files, names, strict=True)), name
    rooted = _write_csv(tmp_path / "elsewhere" / "list.csv",
                        [[os.path.relpath(f, flat), n] for f, n in zip(data.files, names, strict=True)])
    assert read_label_list(rooted, root=flat).samples == data.samples
    assert open_source(rooted, list_root=flat).samples == data.samples  # the one way --data opens it
    assert main(["verify", str(rooted), "--list-root", str(flat)]) == 0
    assert load_jpeg_folder(rooted, list_root=flat).samples == data.samples  # bench --data LIST


@pytest.mark.parametrize(("rows", "message"), [
    ([["a.jpg", "0"], ["b.jpg"]], r"list.csv:2: expected 2 columns like the first row, got 1"),
    ([["a.jpg", "cat", "x"]], r"list.csv:1: the label column holds class indices .* got 'cat'"),
    ([["path", "label", "class"], ["a.jpg", "0", "cat"], ["b.jpg", "0", "dog"]],
     r"list.csv:3: label 0 is class 'dog' here and 'cat' above"),
    ([["path", "label", "class"], ["a.jpg", "0", "cat"], ["b.jpg", "2", "dog"]],
     r"no row has label 1, so its class name is unknown"),
    ([["path", "size"], ["a.jpg", "3"]], r"list.csv:1: the header has a path column but neither label"),
    ([["a.jpg", "1000000"]], r"list.csv:1: label 1000000 is above 999999"),
    ([["", "3"]], r"list.csv:1: the path is empty"),
])
def test_a_bad_csv_line_is_named(tmp_path: Path, rows: list[list[str]], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_label_list(_write_csv(tmp_path / "list.csv", rows))


# ---------------------------------------------------------------- scans


def test_a_link_loop_lists_each_image_once(flat: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """``ln -s . a/loop`` and a second link to a folder: every image once, one warning naming the links."""
    root = tmp_path / "tree"
    shutil.copytree(flat, root)
    (root / "space" / "loop").symlink_to(".")
    (root / "texture" / "again").symlink_to(root / "texture")
    with caplog.at_level(logging.WARNING):
        looped = scan_image_folder(root)
    plain = scan_image_folder(flat)
    assert [os.path.relpath(f, root) for f in looped.files] == [os.path.relpath(f, flat) for f in plain.files]
    assert looped.labels == plain.labels and len(set(looped.files)) == 36
    assert "2 folder links lead to a folder already listed" in caplog.text and "space/loop" in caplog.text


def test_a_fifo_or_socket_with_an_image_name_is_left_out(flat: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Reading a FIFO blocks for ever: a scan leaves it out with one warning, verify of a list naming
    it reports it bad at once."""
    root = tmp_path / "tree"
    shutil.copytree(flat, root)
    os.mkfifo(root / "space" / "pipe.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "texture" / "sock.png"))
    try:
        with caplog.at_level(logging.WARNING):
            data = scan_image_folder(root)
        assert len(data) == 36 and not any(f.endswith(("pipe.jpg", "sock.png")) for f in data.files)
        assert "left out 2 image-named entries that are no regular file" in caplog.text
        assert "space/pipe.jpg" in caplog.text
        listing = _write_csv(tmp_path / "list.csv", [[str(root / "space" / "pipe.jpg"), "space"]])
        assert main(["verify", str(listing)]) == 1
    finally:
        server.close()


@pytest.mark.parametrize(("tree", "command", "hint"), [
    ("flat", ["verify"], "verify takes a folder of class folders, a split root, a label list or one image"),
    ("flat", ["to-shards"], "to-shards needs labelled images"),
    ("split", ["to-shards"], "to-shards needs labelled images"),
])
def test_images_without_class_folders_get_each_commands_hint(
        tmp_path: Path, tree: str, command: list[str], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    """No caller tells a user with a folder of loose images to pass train/ (the training hint is in
    test_train_data.py)."""
    images = tmp_path / "data" / ("train" if tree == "split" else "")
    images.mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff")
    args = [*command, str(tmp_path / "data")] + ([str(tmp_path / "out")] if command == ["to-shards"] else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has no class folders" in err and "(its 1 image file lies directly in it" in err and hint in err
    assert "pass its train/" not in err


# ---------------------------------------------------------------- the hold-out and one class list


def test_split_is_stratified_and_depends_on_seed_and_files_alone(flat: Path, tmp_path: Path) -> None:
    data = scan_image_folder(flat)
    train, val = split_source(data, 0.25, seed=7)
    assert len(val) == 3 * held_out_count(12, 0.25) == 9 and len(train) == 27
    assert sorted(train.files + val.files) == sorted(data.files) and not set(train.files) & set(val.files)
    assert train.classes == val.classes == data.classes
    assert sorted(val.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    shuffled = data.subset(list(reversed(range(len(data)))))  # a label list in another order
    assert sorted(split_source(shuffled, 0.25, seed=7)[1].files) == sorted(val.files)
    moved = tmp_path / "moved"
    shutil.copytree(flat, moved)  # the same tree elsewhere: the same images, by relative path
    moved_val = split_source(scan_image_folder(moved), 0.25, seed=7)[1]
    assert [os.path.relpath(f, moved) for f in moved_val.files] == [os.path.relpath(f, flat)
                                                                     for f in val.files]
    assert set(split_source(data, 0.25, seed=8)[1].files) != set(val.files)
    assert held_out_count(1, 0.5) == 0 and held_out_count(2, 0.9) == 1  # training keeps every class


def test_val_classes_are_matched_by_name_and_an_extra_one_is_refused(
        sample_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A val/ missing a class keeps the later labels right (matched by name, with a warning); a
    val/ with a class train/ lacks is refused before anything is read, naming it."""
    root = tmp_path / "data"
    for name in CLASSES:
        shutil.copytree(sample_root / "train" / name, root / "train" / name)
    for name in CLASSES[1:]:
        shutil.copytree(sample_root / "val" / name, root / "val" / name)
    with caplog.at_level(logging.WARNING):
        pair = open_train_val(root)
    assert isinstance(pair.val, ImageFolderData) and pair.val.classes == pair.train.classes == CLASSES
    assert [pair.val.classes[label] for label in pair.val.labels] == [Path(f).parent.name
                                                                       for f in pair.val.files]
    assert set(pair.val.labels) == {1, 2}
    assert "no images of 1 of the 3 training classes (astronaut)" in caplog.text
    assert labelled_sets(root)["val"].labels == pair.val.labels  # verify and to-shards label val/ alike
    shutil.copytree(sample_root / "val" / "coffee", root / "val" / "coffee")
    with pytest.raises(DatasetError, match=r"data/val has 1 class the training data .* lacks: coffee; every"):
        open_train_val(root)
    assert main(["to-shards", str(root), str(tmp_path / "shards")]) == 2
    assert "lacks: coffee" in capsys.readouterr().err and not (tmp_path / "shards").exists()


def test_shards_of_one_conversion_share_a_class_list(flat: Path, tmp_path: Path) -> None:
    """to-shards --val-split writes train/ and val/ shards of the held-out split, with one class list;
    training reads the shards as a split root, and a label list as --val-data."""
    out = tmp_path / "shards"
    assert main(["to-shards", str(flat), str(out), "--val-split", "0.25", "--seed", "3"]) == 0
    expected_train, expected_val = split_source(scan_image_folder(flat), 0.25, seed=3)
    train, val = open_shards(out / "train"), open_shards(out / "val")
    assert (len(train), len(val)) == (len(expected_train), len(expected_val)) == (27, 9)
    assert train.classes == val.classes == CLASSES
    pair = open_train_val(out)
    assert pair.val is not None and pair.val.classes == pair.train.classes
    data = scan_image_folder(flat)
    rows = [[f, data.classes[label]] for f, label in zip(data.files[:5], data.labels[:5], strict=True)]
    listing = _write_csv(tmp_path / "val.csv", [["path", "class"], *rows])
    with_list = open_train_val(out / "train", val_data=listing)
    assert isinstance(with_list.val, ImageFolderData) and with_list.val.labels == (0,) * 5
    assert main(["to-shards", str(listing), str(tmp_path / "from-list")]) == 0  # a list as SRC
    assert open_shards(tmp_path / "from-list").classes == ("astronaut",)
    wider = ImageFolderData(root=flat, files=data.files, labels=tuple(2 * label for label in data.labels),
                            classes=("astronaut", "coffee", "space", "texture", "zebra"))
    with pytest.raises(DatasetError, match=r"shards that number their classes otherwise .* \(space, texture"):
        with_classes_of(wider, val, name="--val-data shards")


@pytest.mark.parametrize(("layout", "options", "message"), [
    ("split", {"val_split": 0.2}, r"holds val/ already; drop --val-split, or pass --data .*/train to use"),
    ("split", {"val_data": "VAL", "val_split": 0.2}, r"--val-data and --val-split both name"),
    ("flat", {}, r"is one data set, with no validation data: pass --val-split 0.1"),
    ("flat", {"val_data": "SPLIT"}, r"--val-data .* is a split root \(train, val\); pass the folder of its"),
    ("missing", {}, r"--data .*missing does not exist; pass a folder of class folders, a split root"),
])
def test_train_val_refusals_name_the_fix(sample_root: Path, flat: Path, tmp_path: Path, *,
                                         layout: str, options: dict[str, object], message: str) -> None:
    """Refused before any file is read, each naming what to pass instead."""
    data = {"split": sample_root, "flat": flat, "missing": tmp_path / "missing"}[layout]
    paths = {"VAL": str(sample_root / "val"), "SPLIT": str(sample_root)}
    given = {key: paths.get(value, value) if isinstance(value, str) else value
             for key, value in options.items()}
    with pytest.raises(DatasetError, match=message):
        open_train_val(data, **given)
    with pytest.raises(DatasetError, match=r"is a split data root \(train, val\); open one of its splits"):
        open_source(sample_root)
