"""What verification refuses before any decode, each as a class, on real files: headers claiming
more pixels than the file can hold, files that are not regular files, names a DALI file list
cannot hold (on disk and in a bucket), and a skip that would empty a class."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_pipelines import (
    BadFilesError,
    DatasetError,
    ImageFolderData,
    PipelineConfig,
    make_loader,
    prepare_data,
    scan_image_folder,
    verify_data,
)
from dali_pipelines.cli import main
from dali_pipelines.sources.image_folder import read_file_list, write_file_list
from dali_pipelines.sources.s3 import S3ImageFolder
from dali_pipelines.verify.decode import read_local
from dali_pipelines.verify.headers import check_path
from tests.jpeg_kinds import jpeg, photo

PHOTO = photo(96, 72)


def _forged_jpeg(width: int, height: int) -> bytes:
    """A real 96x72 JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    b, i = bytearray(jpeg(PHOTO, quality=30)), 2
    while b[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    b[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def _forged_png(width: int, height: int) -> bytes:
    """A real 96x72 PNG whose IHDR claims ``width`` x ``height`` (its CRC kept valid)."""
    out = io.BytesIO()
    PHOTO.save(out, format="PNG")
    b = bytearray(out.getvalue())
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def _flat(fmt: str, size: int, **options: object) -> bytes:
    """A large flat image, compressed as far as the encoder goes: the least bytes per pixel real
    files have (the bounds must let these pass)."""
    out = io.BytesIO()
    image = Image.new("L" if fmt == "JPEG" else "1", (size, size), 255)
    image.save(out, format=fmt, optimize=True, **options)
    return out.getvalue()


def _data(folder: Path, names: list[str]) -> ImageFolderData:
    return ImageFolderData(root=folder, files=tuple(str(folder / n) for n in names),
                           labels=tuple(range(len(names))), classes=tuple(names))


def test_header_claiming_more_pixels_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    """1-2 KB files claiming 13000x13000 (under the pixel limit) would cost a 0.5 GB decode each."""
    kinds = {"forged.jpg": _forged_jpeg(13000, 13000), "forged.png": _forged_png(13000, 13000),
             "flat_progressive.jpg": _flat("JPEG", 3000, progressive=True, quality=1),
             "flat_baseline.jpg": _flat("JPEG", 3000, quality=1), "flat_1bit.png": _flat("PNG", 3000)}
    for name, content in kinds.items():
        (tmp_path / name).write_bytes(content)
    assert len(kinds["forged.jpg"]) < 2048 and len(kinds["forged.png"]) < 32 * 1024
    report = verify_data(_data(tmp_path, list(kinds)), workers=2)
    assert set(report.bad) == {str(tmp_path / "forged.jpg"), str(tmp_path / "forged.png")}
    for reason in report.bad.values():
        assert "claims 13000x13000" in reason and "needs at least" in reason and "re-encode" in reason
    assert check_path(str(tmp_path / "forged.jpg")).pixels == 0  # refused before DALI could decode it


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    """A FIFO named like a JPEG: opening it to read would wait for a writer forever."""
    (tmp_path / "good.jpg").write_bytes(jpeg(PHOTO))
    os.mkfifo(tmp_path / "pipe.jpg")
    data = _data(tmp_path, ["good.jpg", "pipe.jpg"])
    report = verify_data(data, workers=1)  # the stat pass refuses it: no pass opens it
    pipe = str(tmp_path / "pipe.jpg")
    assert list(report.bad) == [pipe] and "FIFO" in report.bad[pipe]
    assert "FIFO" in (check_path(str(tmp_path / "pipe.jpg")).reason or "")  # the header pass alone
    with pytest.raises(OSError, match="FIFO"):  # and the decode pass's reader
        read_local(str(tmp_path / "pipe.jpg"))
    good = tmp_path / "good.jpg"
    assert np.array_equal(read_local(str(good)), np.fromfile(good, np.uint8))


def test_names_a_file_list_cannot_hold_are_refused_and_never_listed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    names = ["fine.jpg", "two\nlines.jpg", "carriage\rreturn.jpg", "caf\u00e9 au lait.jpg"]
    for name in names:
        (root / "c").mkdir(parents=True, exist_ok=True)
        (root / "c" / name).write_bytes(jpeg(PHOTO))
    data = scan_image_folder(root)
    report = verify_data(data, workers=1)
    assert set(report.bad) == {str(root / "c" / names[1]), str(root / "c" / names[2])}
    assert all("line break" in r and "rename the file" in r for r in report.bad.values())
    trailing = _data(root / "c", ["fine.jpg"])  # a file list can name a file that ends in a space
    (root / "c" / "spaced.jpg ").write_bytes(jpeg(PHOTO))
    spaced = verify_data(ImageFolderData(trailing.root, (*trailing.files, str(root / "c" / "spaced.jpg ")),
                                         (0, 1), ("a", "b")), workers=1)
    assert "ends in whitespace" in spaced.bad[str(root / "c" / "spaced.jpg ")]
    out = tmp_path / "clean.txt"
    assert main(["verify", str(root), "--clean-list", str(out)]) == 1
    capsys.readouterr()
    clean = read_file_list(out)  # it reads back: the two names DALI cannot list are not in it
    assert clean.files == (str(root / "c" / names[3]), str(root / "c" / names[0]))
    cfg = PipelineConfig(batch_size=2, device="cpu", num_threads=1, crop_size=32, resize_size=36)
    loader = make_loader(report.clean(), cfg, train=False)  # and DALI reads the clean names
    assert sorted(label for _, labels in loader for label in labels.tolist()) == [0, 0]
    loader.close()
    with pytest.raises(DatasetError, match=r"2 name\(s\) a file list cannot hold: .*line break"):
        write_file_list(data, tmp_path / "unverified.txt")  # nor does a list of unverified data get them
    assert not (tmp_path / "unverified.txt").exists()


def test_bucket_keys_a_file_list_cannot_hold_are_refused_before_any_request() -> None:
    """Object keys may hold any character: the same rule applies, before a request is sent (no
    server answers here: a request would fail with another reason)."""
    names = ("c/two\nlines.jpg", "c/spaced.jpg ")
    data = S3ImageFolder(root="s3://nowhere/tree", files=tuple(f"s3://nowhere/tree/{n}" for n in names),
                         labels=(0, 0), classes=("c",), sizes=(1000, 1000), etags=("a", "b"))
    report = verify_data(data, cache_dir=None)
    assert report.checked == 0 and list(report.bad) == list(data.files)
    assert "line break" in report.bad[data.files[0]] and "ends in whitespace" in report.bad[data.files[1]]


def test_skipping_every_file_of_a_class_is_refused_naming_it(tmp_path: Path) -> None:
    """--on-bad-file skip never leaves a class without files, as the scan refuses an empty class folder."""
    root = tmp_path / "data"
    for name, content in {"keep/a.jpg": jpeg(PHOTO), "keep/cut.jpg": jpeg(PHOTO)[:300],
                          "lost/empty.jpg": b"", "lost/cut.jpg": jpeg(PHOTO)[:-400]}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    with pytest.raises(BadFilesError) as caught:
        prepare_data(scan_image_folder(root), on_bad_file="skip", cache_dir=None)
    message = str(caught.value)
    assert "would leave 1 class without a single file (lost)," in message  # keep has a good file
    assert "lost/empty.jpg: empty file" in message and "lost/cut.jpg" in message
    assert "remove the class from the data" in message
    (root / "lost" / "b.jpg").write_bytes(jpeg(PHOTO))  # one good file left: skipping is fine
    clean = prepare_data(scan_image_folder(root), on_bad_file="skip", cache_dir=None)
    assert sorted(Path(f).name for f in clean.files) == ["a.jpg", "b.jpg"]
