"""Training from an unsplit folder: --val-split held out per class, --val-data as a label list, and
the hint for a folder without class folders; real JPEG files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dali_pipelines import scan_image_folder
from dali_pipelines.sources import split_source
from train.cli import main
from train.config import MATCH, TrainConfig, names_with_rule
from train.runner import run_data

CLASSES = ("astronaut", "space", "texture")
FAST = ["--device", "cpu", "--image-size", "32", "--batch-size", "9", "--workers", "2"]


def test_val_split_holds_out_from_data_with_one_class_list(flat: Path, tmp_path: Path) -> None:
    """What a run opens (setup's run_data) for --val-split, and for --val-data naming a label list;
    --val-split is recorded with the run's settings, and a resume must match it (test_train_runs)."""
    cfg = TrainConfig(data=str(flat), val_split=0.25)
    train, val = run_data(cfg)
    expected_train, expected_val = split_source(scan_image_folder(flat), 0.25, seed=0)
    assert train.samples == expected_train.samples and val.samples == expected_val.samples
    assert (len(train), len(val)) == (27, 9) and train.classes == val.classes == CLASSES
    assert cfg.to_dict()["val_split"] == 0.25 and names_with_rule(MATCH).count("val_split") == 1
    listing = tmp_path / "val.csv"
    listing.write_text("path,class\n" + "".join(f"{f},{CLASSES[label]}\n" for f, label in
                                                 zip(expected_val.files, expected_val.labels, strict=True)))
    _, listed = run_data(TrainConfig(data=str(flat), val_data=str(listing)))
    assert listed.samples == expected_val.samples
    data = scan_image_folder(flat)
    elsewhere = tmp_path / "lists" / "all.tsv"  # paths relative to --list-root, not to the list
    elsewhere.parent.mkdir()
    elsewhere.write_text("".join(f"{Path(f).relative_to(flat)}\t{label}\n"
                                 for f, label in zip(data.files, data.labels, strict=True)))
    from_list, _ = run_data(TrainConfig(data=str(elsewhere), list_root=str(flat), val_split=0.25))
    assert len(from_list) == 27 and set(from_list.files) <= set(data.files)
    assert from_list.classes == ("0", "1", "2")  # indices alone name the classes 0, 1, 2


def test_a_folder_of_loose_images_gets_the_training_hint(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Images without class folders: the hint names what training takes, not "pass its train/"."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    args = ["--data", str(tmp_path / "data"), "--val-split", "0.1", *FAST, "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has no class folders" in err
    assert "pass a folder of class folders, a split root holding train/" in err
    assert "train/ or val/ folder" not in err
