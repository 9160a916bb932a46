"""WebDataset shards: converter (index, resume, verification), source resolver, reader parity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from shard_sets import foreign_shards

from dali_pipelines import (
    DatasetError,
    PipelineConfig,
    WebDatasetShards,
    convert_dataset,
    make_loader,
    open_source,
    scan_image_folder,
)
from dali_pipelines.sources import convert_image_folder, open_shards

IMAGES = 24
PER_SHARD = 7  # 4 shards: 7, 7, 7, 3


def _cpu(batch_size: int) -> PipelineConfig:
    return PipelineConfig(batch_size=batch_size, device="cpu", num_threads=2, crop_size=32, resize_size=36)


@pytest.fixture(scope="module")
def indexed_tree(val_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real JPEGs, each in its own class folder c00..c23: label == index (two-digit labels too)."""
    root = tmp_path_factory.mktemp("indexed") / "tree"
    for i, path in enumerate(scan_image_folder(val_root).files[:IMAGES]):
        (root / f"c{i:02d}").mkdir(parents=True)
        shutil.copy(path, root / f"c{i:02d}" / "image.jpg")
    return root


@pytest.fixture(scope="module")
def shards_dir(indexed_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "wds"
    convert_image_folder(indexed_tree, out, images_per_shard=PER_SHARD, progress=False)
    return out


def _eval_batches(source: object, batch_size: int, **shard: int) -> tuple[torch.Tensor, list[int]]:
    loader = make_loader(source, _cpu(batch_size), train=False, **shard)  # type: ignore[arg-type]
    batches = list(loader)
    assert len(batches) == len(loader)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]).tolist()


def test_shards_give_the_same_eval_batches_as_loose_files(indexed_tree: Path, shards_dir: Path) -> None:
    """Same images, same labels, bit-identical eval outputs; the stored order is a class mix."""
    shards = open_shards(shards_dir)
    assert (len(shards), shards.shard_samples, shards.classes[:2]) == (IMAGES, (7, 7, 7, 3), ("c00", "c01"))
    images, labels = _eval_batches(shards, 8)
    assert sorted(labels) == list(range(IMAGES)) and labels != sorted(labels)
    # Label i is file i of the ImageFolder, so the loose files in the shards' order are:
    files_images, files_labels = _eval_batches(scan_image_folder(indexed_tree).subset(labels), 8)
    assert files_labels == labels
    assert torch.equal(files_images, images)


def test_eval_over_two_ranks_sees_every_sample_once(shards_dir: Path) -> None:
    """Batch 5 over 12 + 12 samples: padded reader, partial last batch, two epochs running."""
    shards = open_shards(shards_dir)
    loaders = [make_loader(shards, _cpu(5), train=False, shard_id=r, num_shards=2) for r in range(2)]
    for _epoch in range(2):
        seen = []
        for loader in loaders:
            batches = [labels.tolist() for _, labels in loader]
            assert len(batches) == len(loader) == 3
            seen += [label for batch in batches for label in batch]
        assert sorted(seen) == list(range(IMAGES))


def test_train_ranks_read_disjoint_samples(shards_dir: Path) -> None:
    """Training shards (tar order reshuffled per epoch) stay disjoint across ranks, full batches only."""
    shards = open_shards(shards_dir)
    loaders = [make_loader(shards, _cpu(4), train=True, shard_id=r, num_shards=2) for r in range(2)]
    for _epoch in range(2):
        seen = [label for loader in loaders for _, labels in loader for label in labels.tolist()]
        assert len(seen) == len(set(seen)) == 24


def test_index_files_equal_dalis_wds2idx(shards_dir: Path, tmp_path: Path) -> None:
    """The converter's index is byte-identical to the one DALI's own tool makes from the tar."""
    tar = shards_dir / "shard-000001.tar"
    subprocess.run([sys.executable, "-m", "wds2idx", str(tar), str(tmp_path / "ref.idx")],
                   check=True, capture_output=True)
    assert (shards_dir / "shard-000001.idx").read_bytes() == (tmp_path / "ref.idx").read_bytes()


def test_truncated_shard_is_named_before_dali_runs(shards_dir: Path, tmp_path: Path) -> None:
    """A cut tar fails with its name at open time, and at loader build time if cut after opening."""
    copy = tmp_path / "wds"
    shutil.copytree(shards_dir, copy)
    opened = open_shards(copy)
    tar = copy / "shard-000002.tar"
    with tar.open("r+b") as f:
        f.truncate(tar.stat().st_size // 2)
    with pytest.raises(DatasetError, match=r"shard-000002\.tar is truncated"):
        open_source(copy)
    with pytest.raises(DatasetError, match=r"shard-000002\.tar changed size"):
        make_loader(opened, _cpu(4), train=False)


def test_shard_cut_in_its_tail_padding_is_caught_by_the_manifest(shards_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "wds"
    shutil.copytree(shards_dir, copy)
    tar = copy / "shard-000000.tar"
    with tar.open("r+b") as f:
        f.truncate(tar.stat().st_size - 512)  # only end-of-archive blocks lost: the index still fits
    with pytest.raises(DatasetError, match=r"shard-000000\.tar has .* but .*manifest\.json recorded"):
        open_shards(copy)


def test_interrupted_conversion_resumes(indexed_tree: Path, shards_dir: Path, tmp_path: Path) -> None:
    """Finished shards are kept (checksums re-checked); half-written or damaged ones are rewritten."""
    out = tmp_path / "wds"
    shutil.copytree(shards_dir, out)
    # The state an interruption while writing shard 2 leaves: no manifest, shard 2 half written
    # (no record yet), shards 0-1 done; shard 1 then damaged on disk (same size, one byte changed).
    (out / "manifest.json").unlink()
    (out / "shard-000002.json").unlink()
    (out / "shard-000002.tar").rename(out / "shard-000002.tar.partial")
    for name in ("shard-000003.tar", "shard-000003.idx", "shard-000003.json"):
        (out / name).unlink()
    with (out / "shard-000001.tar").open("r+b") as f:
        f.seek(2000)
        byte = f.read(1)
        f.seek(2000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DatasetError, match="did not finish"):
        open_source(out)
    kept = (out / "shard-000000.tar").stat().st_mtime_ns
    resumed = convert_image_folder(indexed_tree, out, images_per_shard=PER_SHARD, progress=False)
    assert (out / "shard-000000.tar").stat().st_mtime_ns == kept
    for name in ("shard-000001.tar", "shard-000002.tar", "shard-000003.tar", "manifest.json"):
        assert (out / name).read_bytes() == (shards_dir / name).read_bytes(), name
    assert not (out / "shard-000002.tar.partial").exists()
    assert len(resumed) == IMAGES


def test_resume_with_other_settings_is_refused(indexed_tree: Path, shards_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "wds"
    shutil.copytree(shards_dir, out)
    with pytest.raises(DatasetError, match="other settings"):
        convert_image_folder(indexed_tree, out, images_per_shard=PER_SHARD + 1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and holds no conversion"):
        convert_image_folder(indexed_tree, tmp_path / "other", progress=False)


def test_split_root_converts_each_split_and_skips_bad_files(sample_root: Path, tmp_path: Path) -> None:
    """train/ + val/ become out/train + out/val; a broken JPEG is left out by the verify checks."""
    src = tmp_path / "data"
    shutil.copytree(sample_root, src)
    bad = src / "val" / scan_image_folder(src / "val").classes[0] / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    written = convert_dataset(src, tmp_path / "wds", images_per_shard=50, progress=False)
    assert {k: len(v) for k, v in written.items()} == {"train": 72, "val": 24}
    val = open_source(tmp_path / "wds", split="val")
    assert isinstance(val, WebDatasetShards) and val.classes == scan_image_folder(src / "val").classes
    sources = json.loads((tmp_path / "wds" / "val" / "shard-000000.json").read_text())["sources"]
    assert "broken.jpg" not in {Path(s).name for s in sources}


def test_split_root_output_holding_other_folders_is_refused_before_any_work(sample_root: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "wds"
    (out / "photos").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"holds photos, not only the split folders .* \(train, val\)"):
        convert_dataset(sample_root, out, progress=False)
    assert [p.name for p in out.iterdir()] == ["photos"]
    (out / "photos").rmdir()
    (out / "val").mkdir()
    (out / "val" / "notes.txt").write_text("mine")  # val/ is checked before train/ is converted
    with pytest.raises(DatasetError, match="not empty and holds no conversion"):
        convert_dataset(sample_root, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["val"]


def test_open_source_detects_the_format_and_names_the_fix(sample_root: Path, shards_dir: Path) -> None:
    assert isinstance(open_source(shards_dir), WebDatasetShards)
    assert len(open_source(sample_root, split="train")) == 72
    with pytest.raises(DatasetError, match=r"holds \.tar shards, not class folders"):
        open_source(shards_dir, fmt="folder")
    with pytest.raises(DatasetError, match=r"has no \.tar shards; create them with"):
        open_source(sample_root / "val", fmt="wds")
    with pytest.raises(DatasetError, match=r"/test does not exist; pass a data root with a test/ folder"):
        open_source(sample_root, split="test")
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(sample_root / "missing")


def test_train_checkpoint_resumes_the_same_batches(shards_dir: Path) -> None:
    """DALI reader checkpointing covers the webdataset reader (buffer shuffle, tar-order reshuffle)."""
    shards = open_shards(shards_dir)
    loader = make_loader(shards, _cpu(4), train=True)
    batches = iter(loader)
    for _ in range(2):
        next(batches)
    state = loader.state()
    rest = [labels.tolist() for _, labels in batches] + [labels.tolist() for _, labels in loader]
    resumed = make_loader(shards, _cpu(4), train=True, checkpoint=state)
    again = [labels.tolist() for _, labels in resumed] + [labels.tolist() for _, labels in resumed]
    assert again == rest


def test_foreign_shard_labels_with_whitespace_are_read_right(indexed_tree: Path, tmp_path: Path) -> None:
    """.cls members padded with whitespace (b"3\\n", b" 7", b"12\\r\\n") give the labels they spell."""
    images = [Path(p).read_bytes() for p in scan_image_folder(indexed_tree).files[:4]]
    folder = foreign_shards(tmp_path / "foreign", images, [b"3\n", b" 7", b"12\r\n", b"0"], classes=13)
    _, labels = _eval_batches(open_shards(folder), 4)
    assert labels == [3, 7, 12, 0]


@pytest.mark.parametrize("label", [b"13", b"-1", b"x", b"3\n\n\n\n\n"])
def test_foreign_shard_with_a_bad_label_is_named(indexed_tree: Path, tmp_path: Path, label: bytes) -> None:
    images = [Path(p).read_bytes() for p in scan_image_folder(indexed_tree).files[:2]]
    folder = foreign_shards(tmp_path / "foreign", images, [b"1", label], classes=13)
    with pytest.raises(DatasetError, match=r"data\.tar: sample 's1' has label .*class number 0-12"):
        open_shards(folder)


@pytest.mark.parametrize("manifest", ["[]", "{}", '{"shards": [{"tar": "shard-000000.tar"}]}'])
def test_malformed_manifest_is_named(shards_dir: Path, tmp_path: Path, manifest: str) -> None:
    copy = tmp_path / "wds"
    shutil.copytree(shards_dir, copy)
    (copy / "manifest.json").write_text(manifest)
    with pytest.raises(DatasetError, match=r"manifest\.json is malformed"):
        open_shards(copy)


def test_output_folder_is_checked_before_verifying(indexed_tree: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A refused OUT gets no .verify-cache; a file as OUT (or inside OUT's path) is one error line."""
    from dali_pipelines.cli import main

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and holds no conversion"):
        convert_image_folder(indexed_tree, taken, progress=False)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    for out in (taken / "notes.txt", taken / "notes.txt" / "wds"):
        capsys.readouterr()
        assert main(["to-shards", str(indexed_tree), str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "notes.txt" in err and "Traceback" not in err, err
