"""Capped resolution: to-shards --max-side re-encodes large images only (aspect, orientation and mode
kept), records the cap, writes the same bytes again, and refuses to resume with other options."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from jpeg_kinds import EXIF_ORIENTATION, exif_rotated, jpeg, photo
from PIL import Image

from dali_pipelines import DatasetError, PipelineConfig, make_loader, scan_image_folder
from dali_pipelines.sources import convert_image_folder
from dali_pipelines.sources.capped import ResolutionCap, capped_image

CAP = 384
PER_SHARD = 10  # val_root's 24 images: shards of 10, 10, 4


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_capped_image_keeps_aspect_orientation_and_mode(tmp_path: Path) -> None:
    cap = ResolutionCap(300, quality=85)
    rotated = Image.open(io.BytesIO(capped_image(_write(tmp_path / "r.jpg", exif_rotated(photo(600, 400))),
                                                 cap) or b""))
    assert (rotated.size, rotated.getexif()[EXIF_ORIENTATION], rotated.mode) == ((300, 200), 6, "RGB")
    assert "progressive" not in rotated.info  # baseline: what the hardware decoder takes
    gray = photo(250, 500).convert("L")
    grayed = capped_image(_write(tmp_path / "g.jpg", jpeg(gray)), cap) or b""
    assert Image.open(io.BytesIO(grayed)).mode == "L"
    deep = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # 16-bit grayscale PNG
    deep.save(tmp_path / "d.png")
    small = Image.open(io.BytesIO(capped_image(tmp_path / "d.png", cap) or b""))
    expected = np.asarray(gray.resize((150, 300), Image.Resampling.LANCZOS), dtype=np.float32)
    assert small.size == (150, 300) and abs(np.asarray(small, dtype=np.float32).mean() - expected.mean()) < 2
    assert capped_image(_write(tmp_path / "s.jpg", jpeg(photo(300, 120))), cap) is None  # within the cap
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100"):
        ResolutionCap(300, quality=0)


def _members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def capped(val_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capped") / "wds"
    convert_image_folder(val_root, out, images_per_shard=PER_SHARD, progress=False, max_side=CAP)
    return out


def test_capped_shards_reencode_only_large_images_deterministically(val_root: Path, capped: Path,
                                                                    tmp_path: Path) -> None:
    """Images over the cap come out with the longer side at it (aspect kept), the others byte for
    byte; the cap is in the manifest and in each shard's record; a second conversion writes the same
    bytes; DALI reads the shards."""
    shards = convert_image_folder(val_root, tmp_path / "again", images_per_shard=PER_SHARD, progress=False,
                                  max_side=CAP)
    assert json.loads((capped / "manifest.json").read_text())["max_side"] == CAP
    large = 0
    for tar in sorted(capped.glob("*.tar")):
        assert tar.read_bytes() == (tmp_path / "again" / tar.name).read_bytes()
        record = json.loads(tar.with_suffix(".json").read_text())
        images = [data for name, data in _members(tar).items() if name.endswith(".jpg")]
        for source, image in zip(record["sources"], images, strict=True):
            original = Image.open(val_root / source)
            stored = Image.open(io.BytesIO(image))
            if max(original.size) <= CAP:
                assert image == (val_root / source).read_bytes()
                continue
            large += 1
            assert max(stored.size) == CAP
            assert abs(stored.size[0] / stored.size[1] - original.size[0] / original.size[1]) < 0.01
        large_here = sum(max(Image.open(val_root / s).size) > CAP for s in record["sources"])
        assert (record["max_side"], record["quality"], record["reencoded"]) == (CAP, 90, large_here)
    assert 0 < large < len(shards)  # the sample set has images on both sides of the cap
    cfg = PipelineConfig(batch_size=len(shards), device="cpu", num_threads=2, crop_size=32, resize_size=36)
    labels = [label for _, batch in make_loader(shards, cfg, train=False) for label in batch.tolist()]
    assert sorted(labels) == sorted(scan_image_folder(val_root).labels)


def test_rerun_with_other_cap_options_is_refused(val_root: Path, capped: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from dali_pipelines.cli import main

    out = tmp_path / "wds"
    shutil.copytree(capped, out)
    for options in ({"max_side": CAP, "quality": 80}, {}, {"max_side": 256}):
        with pytest.raises(DatasetError, match=f"other settings .* max side {CAP} px at quality 90"):
            convert_image_folder(val_root, out, images_per_shard=PER_SHARD, progress=False, **options)
    assert main(["to-shards", str(val_root), str(tmp_path / "new"), "--quality", "80"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--quality sets how --max-side re-encodes images" in err
    assert not (tmp_path / "new").exists()
