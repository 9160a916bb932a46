"""Shard integrity before and during training: recorded checksums checked (cached by stat), shards
without checksums checked member by member, and a decode failure inside DALI named by shard and sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from shard_sets import foreign_shards

from dali_pipelines import DatasetError, PipelineConfig, make_loader, scan_image_folder
from dali_pipelines.sources import convert_image_folder, open_shards
from dali_pipelines.sources.webdataset import read_index
from dali_pipelines.verify import prepare_shards, verify_shards

PER_SHARD = 7  # val_root's 24 images: shards of 7, 7, 7, 3


@pytest.fixture(scope="module")
def converted(val_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("checked") / "wds"
    convert_image_folder(val_root, out, images_per_shard=PER_SHARD, progress=False)
    return out


def _damaged_copy(shards: Path, folder: Path, tar_name: str, sample: int) -> tuple[Path, str]:
    """A copy of ``shards`` with the JPEG markers after SOI of one image member zeroed (same size:
    only a checksum or a look inside shows it); the copy and that sample's key."""
    copy = folder / "wds"
    shutil.copytree(shards, copy)
    tar = copy / tar_name
    entry = read_index(tar.with_suffix(".idx"))[sample]
    with tar.open("r+b") as f:
        f.seek(entry.members["jpg"][0] + 2)
        f.write(bytes(32))
    return copy, entry.key


def test_damaged_shard_is_refused_before_training_with_shard_sample_and_fix(converted: Path,
                                                                            tmp_path: Path) -> None:
    copy, key = _damaged_copy(converted, tmp_path, "shard-000001.tar", 2)
    with pytest.raises(DatasetError) as caught:
        prepare_shards(open_shards(copy))
    message = str(caught.value)
    assert "\n" not in message
    assert f"000001.tar: its sha256 differs from the one manifest.json records (sample '{key}'" in message
    assert message.endswith("copy it again from where it was made, or re-run to-shards")


def test_a_second_check_costs_a_stat_per_shard(converted: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Unchanged shards come from the cache; a rewritten one (new mtime) is read again; the verify
    command says the same, exit status 1 for a bad shard."""
    from dali_pipelines.cli import main

    copy = tmp_path / "wds"
    shutil.copytree(converted, copy)
    shards, cache = open_shards(copy), tmp_path / "cache"
    first = verify_shards(shards, cache_dir=cache)
    second = verify_shards(shards, cache_dir=cache)
    assert (first.checked, first.cached, second.checked, second.cached, second.ok) == (4, 0, 0, 4, True)
    tar = copy / "shard-000003.tar"
    data = bytearray(tar.read_bytes())
    data[-3000] ^= 0xFF  # inside the last image's data: no header shows it, only the checksum
    tar.write_bytes(bytes(data))
    os.utime(tar, ns=(1, 1))
    third = verify_shards(shards, cache_dir=cache)
    assert (third.checked, third.cached, list(third.bad)) == (1, 3, [str(tar)])
    assert "every sample's header passes" in third.bad[str(tar)]
    assert main(["verify", str(copy)]) == 1
    assert "4 shards checked (checksums, or member headers)" in capsys.readouterr().out


def test_shard_without_checksums_is_checked_member_by_member(val_root: Path, tmp_path: Path) -> None:
    images = [Path(p).read_bytes() for p in scan_image_folder(val_root).files[:3]]
    images[1] = images[1][: len(images[1]) // 2]  # cut short: no end-of-image marker
    folder = foreign_shards(tmp_path / "foreign", images, [b"0", b"1", b"2"], classes=3)
    with pytest.raises(DatasetError, match=r"data\.tar: sample 's1' \(s1\.jpg\): truncated JPEG.*wds2idx"):
        prepare_shards(open_shards(folder))


def test_decode_failure_inside_dali_names_the_shard_and_sample(converted: Path, tmp_path: Path) -> None:
    """Damage that slips past the checks (here: made after them) stops DALI with an error naming
    neither; the loader maps it back to the shard and the sample, in one line with the fix."""
    copy, key = _damaged_copy(converted, tmp_path, "shard-000002.tar", 4)
    cfg = PipelineConfig(batch_size=8, device="cpu", num_threads=2, crop_size=32, resize_size=36)
    loader = make_loader(open_shards(copy), cfg, train=False)
    with pytest.raises(DatasetError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message and "Critical error" in str(caught.value.__cause__)
    assert "shard-000002.tar: its sha256 differs" in message and f"sample '{key}'" in message
