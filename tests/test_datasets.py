"""ImageFolder scanning matches torchvision; bad roots give one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from dali_pipelines import (
    DatasetError,
    make_sample_dataset,
    open_source,
    scan_image_folder,
)
from dali_pipelines.sources import read_file_list, split_folders, write_file_list


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (120, 30, 200)).save(path, "JPEG")


def test_scan_matches_torchvision_on_sample(val_root: Path) -> None:
    """Same classes and (path, label) list as ImageFolder on the sample set."""
    ours = scan_image_folder(val_root)
    theirs = ImageFolder(str(val_root))
    assert list(ours.classes) == theirs.classes
    assert ours.samples == [(str(Path(p)), label) for p, label in theirs.samples]


def test_scan_matches_torchvision_on_awkward_tree(tmp_path: Path) -> None:
    """Nested folders, upper-case extensions, non-images, names that sort oddly."""
    for rel in ["B/x.JPG", "B/sub/y.jpeg", "B/sub/a.png", "a/z.jpg", "a/_1.jpg", "Z10/1.jpg",
                "Z2/10.jpg", "Z2/9.jpg"]:
        _jpeg(tmp_path / rel)  # JPEG bytes even in a.png: only names matter to the scan
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ours = scan_image_folder(tmp_path)
    theirs = ImageFolder(str(tmp_path))
    assert list(ours.classes) == theirs.classes == ["B", "Z10", "Z2", "a"]
    assert ours.samples == theirs.samples


def test_missing_root_names_path(tmp_path: Path) -> None:
    """A root that does not exist is named in the error."""
    with pytest.raises(DatasetError, match=f"data root {tmp_path / 'nope'} does not exist"):
        scan_image_folder(tmp_path / "nope")


def test_root_without_class_folders(tmp_path: Path) -> None:
    """Images directly in the root (no class folders) are refused with the expected layout."""
    _jpeg(tmp_path / "x.jpg")
    with pytest.raises(DatasetError, match=r"has no class folders; expected .*/<class>/<image>.jpg"):
        scan_image_folder(tmp_path)


def test_class_folder_without_images(tmp_path: Path) -> None:
    """An empty class folder is named so the user can fill or delete it."""
    _jpeg(tmp_path / "cats" / "1.jpg")
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=f"class folder {tmp_path / 'dogs'} has no image files"):
        scan_image_folder(tmp_path)


def test_file_list_round_trip(val_root: Path, tmp_path: Path) -> None:
    """A list written outside the data root reads back, paths relative to the list's folder."""
    data = scan_image_folder(val_root)
    listing = write_file_list(data, tmp_path / "lists" / "val.txt")
    first = listing.read_text().splitlines()[0]
    assert first.startswith("../") and first.endswith(f" {data.labels[0]}")
    again = read_file_list(listing, classes=data.classes)
    assert again.samples == data.samples and again.classes == data.classes


def test_dali_reads_a_written_file_list_as_we_do(val_root: Path, tmp_path: Path) -> None:
    """fn.readers.file(file_list=...) without file_root finds the same files with the same labels."""
    from nvidia.dali import fn, pipeline_def

    data = scan_image_folder(val_root)
    listing = write_file_list(data, tmp_path / "lists" / "val.txt")

    @pipeline_def(batch_size=len(data), num_threads=1, device_id=None)
    def read_list():
        encoded, labels = fn.readers.file(file_list=str(listing), random_shuffle=False)
        return encoded, labels

    pipe = read_list()
    pipe.build()
    encoded, labels = pipe.run()
    by_bytes = {Path(f).read_bytes(): label for f, label in data.samples}
    assert [by_bytes[encoded.at(i).tobytes()] for i in range(len(data))] == list(data.labels)
    assert [int(labels.at(i)[0]) for i in range(len(data))] == list(data.labels)


def test_file_list_bad_line(tmp_path: Path) -> None:
    """A malformed line is reported with file and line number."""
    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg 0\nb.jpg cat\n")
    with pytest.raises(DatasetError, match=r"list.txt:2: expected '<path> <integer label>'"):
        read_file_list(listing)


def test_a_split_root_holds_only_split_folders(tmp_path: Path) -> None:
    """One rule for every command: a split root's sub-folders are all train/, val/ or test/ (hidden
    ones aside); anything else beside them makes it one data set, and training refuses it by name."""
    for name in ("val", "train", ".ipynb_checkpoints"):
        (tmp_path / "data" / name).mkdir(parents=True)
    assert split_folders(tmp_path / "data") == {"train": tmp_path / "data" / "train",
                                                "val": tmp_path / "data" / "val"}
    (tmp_path / "data" / "notes").mkdir()
    assert split_folders(tmp_path / "data") == {}
    with pytest.raises(DatasetError, match=r"holds notes beside its split folders; .* move the others out"):
        open_source(tmp_path / "data", split="train")
    (tmp_path / "classes" / "test").mkdir(parents=True)  # an ImageFolder with a class called "test"...
    (tmp_path / "classes" / "cat").mkdir()
    assert split_folders(tmp_path / "classes") == {}  # ... stays one data set


def test_the_sample_set_is_the_same_for_any_number_of_writers(tmp_path: Path) -> None:
    """Every draw is made before any file is written: two processes write the bytes one does."""
    def files(root: Path) -> dict[Path, bytes]:
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}

    alone = files(make_sample_dataset(tmp_path / "alone", images=16, seed=5))
    shared = files(make_sample_dataset(tmp_path / "shared", images=16, seed=5, workers=2))
    assert len(alone) == 16 and shared == alone
