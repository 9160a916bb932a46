"""Verification: what DALI decodes stays accepted, what kills a DALI pipeline is named first.

Every kind here was decoded by DALI 2.4's CPU decoder: the accepted ones go through the real
train and eval graphs, and the rejected ones really stop a pipeline ("Critical error in
pipeline") where that can be shown without allocating gigabytes (the decompression bombs).
Reasons that start "DALI's decoder failed" come from DALI itself: the header pass handed it
files whose header cannot show that DALI decodes them.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sqlite3
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features
from skimage import data as skdata

from dali_pipelines import (
    BadFilesError,
    ImageFolderData,
    PipelineConfig,
    make_loader,
    prepare_data,
    scan_image_folder,
    verify_data,
)
from dali_pipelines.cli import main
from dali_pipelines.sources import read_file_list
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS, check_path

# PHOTO's baseline JPEG (below) with the same coefficients re-coded arithmetically, as
# `jpegtran -arithmetic` does: no Python encoder writes arithmetic-coded JPEG.
ARITHMETIC_JPEG = Path(__file__).parent / "data" / "arithmetic.jpg"
PHOTO = Image.fromarray(skdata.astronaut()).resize((96, 72))  # a real photo, non-square


def _jpeg(image: Image.Image = PHOTO, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **options)
    return out.getvalue()


def _encode(fmt: str, image: Image.Image = PHOTO, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _jpeg(exif=exif.tobytes())


def _avif() -> bytes:
    """An AVIF photo; without Pillow's AVIF codec, its first bytes (all a header pass reads)."""
    return _encode("AVIF") if features.check("avif") else b"\x00\x00\x00\x1cftypavif" + bytes(64)


Image.init()
# A Pillow older than its AVIF plugin (11.2) does not know the format: the content is then no image.
_AVIF_WORDS = "AVIF content" if "AVIF" in Image.OPEN else "not an image"


def _junk(size: int) -> bytes:
    """Random bytes without 0xFF, so they hold no JPEG marker (and no FF D9)."""
    return np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes()


ACCEPTED: dict[str, Callable[[], bytes]] = {
    "subsampling_420.jpg": lambda: _jpeg(subsampling=2),
    "subsampling_422.jpg": lambda: _jpeg(subsampling=1),
    "subsampling_444.jpg": lambda: _jpeg(subsampling=0),
    "grayscale.jpg": lambda: _jpeg(PHOTO.convert("L")),
    "cmyk.jpg": lambda: _jpeg(PHOTO.convert("CMYK")),
    "progressive.jpg": lambda: _jpeg(progressive=True),
    "exif_rotated.jpg": _exif_rotated,
    "restart_markers.jpg": lambda: _jpeg(restart_marker_blocks=2),
    "arithmetic.jpg": ARITHMETIC_JPEG.read_bytes,
    "png_content.jpg": lambda: _encode("PNG"),
    "rgba.png": lambda: _encode("PNG", PHOTO.convert("RGBA")),
    "photo.bmp": lambda: _encode("BMP"),
    "photo.tiff": lambda: _encode("TIFF"),
    "photo.webp": lambda: _encode("WEBP"),
    "lossless.webp": lambda: _encode("WEBP", lossless=True),
    "photo.ppm": lambda: _encode("PPM"),
    "gray.pgm": lambda: _encode("PPM", PHOTO.convert("L")),
    "junk_after_end.jpg": lambda: _jpeg() + _junk(100 * 1024),  # end marker not in the tail: a scan finds it
    "junk_after_iend.png": lambda: _encode("PNG") + _junk(4096),  # IEND not in the tail either
}


def _patch_frame(jpeg: bytes, patch: Callable[[bytearray, int], None]) -> bytes:
    """Change the JPEG frame header (SOF) in place: coding type, precision or dimensions."""
    b, i = bytearray(jpeg), 2
    while b[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    patch(b, i)
    return bytes(b)


def _sof(marker: int, precision: int = 8) -> Callable[[bytearray, int], None]:
    def patch(b: bytearray, i: int) -> None:
        b[i + 1], b[i + 4] = marker, precision
    return patch


def _jpeg_size(width: int, height: int) -> Callable[[bytearray, int], None]:
    def patch(b: bytearray, i: int) -> None:
        b[i + 5:i + 9] = struct.pack(">HH", height, width)
    return patch


def _short_sof(b: bytearray, i: int) -> None:
    b[i + 2:i + 4] = struct.pack(">H", 8)  # frame header length too short for its 3 components


def _png_bomb() -> bytes:
    b = bytearray(_encode("PNG"))
    b[16:24] = struct.pack(">II", 60000, 60000)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # keep IHDR's CRC valid
    return bytes(b)


def _png_bad_idat() -> bytes:
    png = bytearray(_encode("PNG"))
    png[len(png) // 2] ^= 0xFF  # inside IDAT: only a full decode (zlib check) can see it
    return bytes(png)


_DALI = "DALI's decoder failed"

# name -> (content, expected words in the reason, DALI pipeline dies on it (tested when True))
REJECTED: dict[str, tuple[Callable[[], bytes], str, bool]] = {
    "empty.jpg": (lambda: b"", "empty file", True),
    "html_page.jpg": (lambda: b"<html><body>404 Not Found</body></html>\n", "not an image", True),
    "cut_in_half.jpg": (lambda: _jpeg()[: len(_jpeg()) // 2], "truncated JPEG", True),
    "no_end_marker.jpg": (lambda: _jpeg()[:-2], "truncated JPEG", True),
    "cut_in_header.jpg": (lambda: _jpeg()[:100], "truncated JPEG", True),
    "twelve_bit.jpg": (lambda: _patch_frame(_jpeg(), _sof(0xC1, 12)), "12-bit", True),
    "lossless_sof3.jpg": (lambda: _patch_frame(_jpeg(), _sof(0xC3)), _DALI, True),
    "hierarchical_sof5.jpg": (lambda: _patch_frame(_jpeg(), _sof(0xC5)), "Unsupported JPEG process", True),
    "short_sof.jpg": (lambda: _patch_frame(_jpeg(), _short_sof), _DALI, True),
    "gif_content.jpg": (lambda: _encode("GIF"), "GIF content", True),
    "avif_content.jpg": (_avif, _AVIF_WORDS, True),
    "bomb.jpg": (lambda: _patch_frame(_jpeg(), _jpeg_size(60000, 60000)), "60000x60000", False),
    "bomb.png": (_png_bomb, "60000x60000", False),
    "cut.png": (lambda: _encode("PNG")[:300], "truncated PNG", True),
    "cut.webp": (lambda: _encode("WEBP")[:200], "truncated WebP", True),
    "cut.bmp": (lambda: _encode("BMP")[:1000], "truncated BMP", True),
    "cut.tiff": (lambda: _encode("TIFF")[:5000], _DALI, True),  # no end marker: DALI tells
    "tiny_bm.bmp": (lambda: b"BM\x00", "unreadable BMP header", True),  # once a struct.error killed verify
}


def _write_all(folder: Path, kinds: dict[str, Callable[[], bytes]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in kinds]
    for path, make in zip(paths, kinds.values(), strict=True):
        path.write_bytes(make())
    return paths


@pytest.fixture(scope="module")
def accepted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("accepted")
    _write_all(folder, ACCEPTED)
    return folder


@pytest.fixture(scope="module")
def rejected_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rejected")
    _write_all(folder, {name: make for name, (make, _, _) in REJECTED.items()})
    return folder


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    """An ImageFolder with a class of good files and a class holding three bad ones."""
    root = tmp_path / "data"
    _write_all(root / "good", ACCEPTED)
    _write_all(root / "mixed", {"a.jpg": _jpeg, "empty.jpg": lambda: b"", "cut.jpg": lambda: _jpeg()[:-400]})
    (root / "mixed" / "gone.jpg").symlink_to(root / "nowhere.jpg")  # dangling: unreadable by root too
    return root


def _as_data(paths: list[Path]) -> ImageFolderData:
    return ImageFolderData(root=paths[0].parent, files=tuple(str(p) for p in paths),
                           labels=tuple(range(len(paths))), classes=tuple(p.stem for p in paths))


def _reason(path: Path, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """What ``verify_data`` (no cache) says about one file."""
    return verify_data(_as_data([path]), deep=deep, max_pixels=max_pixels, workers=1).bad.get(str(path))


def test_accepted_kinds_pass_the_header_pass(accepted_dir: Path) -> None:
    report = verify_data(_as_data(sorted(accepted_dir.iterdir())), workers=2)
    assert report.bad == {}


def test_header_pass_hands_dali_only_what_a_header_cannot_vouch_for(accepted_dir: Path) -> None:
    """Huffman-coded JPEG, PNG, WebP and BMP are judged from a header read; the rest DALI decodes."""
    decoded = {name for name in ACCEPTED if check_path(str(accepted_dir / name)).needs_decode}
    assert decoded == {"arithmetic.jpg", "photo.tiff", "photo.ppm", "gray.pgm"}


def test_fixture_kinds_are_what_their_names_say(accepted_dir: Path) -> None:
    restart = (accepted_dir / "restart_markers.jpg").read_bytes()
    assert b"\xff\xdd" in restart and b"\xff\xd0" in restart  # DRI segment and an RST0 marker
    arithmetic = ARITHMETIC_JPEG.read_bytes()
    assert b"\xff\xc9" in arithmetic and b"\xff\xc4" not in arithmetic  # SOF9, no Huffman table
    with Image.open(ARITHMETIC_JPEG) as decoded:  # PHOTO, as a JPEG at quality 90 shows it
        assert np.abs(np.asarray(decoded, dtype=np.float32) - np.asarray(PHOTO)).mean() < 8  # garbage: ~80


def test_accepted_kinds_pass_deep_decode(accepted_dir: Path) -> None:
    report = verify_data(_as_data(sorted(accepted_dir.iterdir())), deep=True, workers=2)
    assert report.bad == {}
    assert report.checked == len(ACCEPTED)


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("train", [True, False], ids=["train_graph", "eval_graph"])
def test_accepted_kinds_go_through_dali_graphs(accepted_dir: Path, train: bool, device: str) -> None:
    """What verification accepts (judged on the CPU) also decodes in the graphs, nvJPEG's included."""
    data = _as_data(sorted(accepted_dir.iterdir()))
    cfg = PipelineConfig(batch_size=len(data), device=device, num_threads=2, crop_size=32, resize_size=40)
    loader = make_loader(data, cfg, train=train)
    batches = list(loader)
    loader.close()
    images = np.concatenate([b[0].cpu().numpy() for b in batches])
    assert images.shape == (len(data), 3, 32, 32)
    assert np.isfinite(images).all()


def test_exif_orientation_is_applied_by_dali(accepted_dir: Path) -> None:
    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali import types

    encoded = np.fromfile(accepted_dir / "exif_rotated.jpg", dtype=np.uint8)
    decoded = ndd.decoders.image(ndd.as_tensor(encoded), device="cpu", output_type=types.RGB)
    assert np.asarray(decoded).shape == (96, 72, 3)  # stored 96 wide x 72 high, shown rotated


def test_rejected_kinds_are_named_with_reasons_by_the_header_pass(rejected_dir: Path) -> None:
    report = verify_data(_as_data([rejected_dir / name for name in REJECTED]), workers=2)
    for name, (_, words, _) in REJECTED.items():
        reason = report.bad.get(str(rejected_dir / name))
        assert reason is not None and words in reason, (name, reason)


@pytest.mark.parametrize("name", [n for n, (_, _, dies) in REJECTED.items() if dies])
def test_rejected_kind_really_stops_a_dali_pipeline(rejected_dir: Path, name: str) -> None:
    cfg = PipelineConfig(batch_size=1, device="cpu", num_threads=1, crop_size=32, resize_size=40)
    with pytest.raises(RuntimeError, match="Critical error in pipeline"):
        list(make_loader(_as_data([rejected_dir / name]), cfg, train=False))


def test_damage_inside_compressed_data_needs_deep(tmp_path: Path) -> None:
    path = tmp_path / "bad_idat.png"
    path.write_bytes(_png_bad_idat())
    assert _reason(path) is None
    reason = _reason(path, deep=True)
    assert reason is not None and reason.startswith(_DALI)
    cfg = PipelineConfig(batch_size=1, device="cpu", num_threads=1, crop_size=32, resize_size=40)
    with pytest.raises(RuntimeError, match="Critical error in pipeline"):
        list(make_loader(_as_data([path]), cfg, train=False))


def test_pixel_limit_is_configurable_and_applies_before_decoding(rejected_dir: Path, tmp_path: Path) -> None:
    raised = _reason(rejected_dir / "bomb.jpg", max_pixels=60000 * 60000)  # its 4 KB cannot hold the claim
    assert raised is not None and "over the limit" not in raised and "needs at least" in raised
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg())
    reason = _reason(small, max_pixels=96 * 72 - 1)
    assert reason is not None and "96x72" in reason and "--max-pixels" in reason


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: root reads a chmod 000 file, so the permission check "
                    "cannot fail here (the dangling-symlink test covers the unreadable path)")
def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(_jpeg())
    path.chmod(0)
    reason = _reason(path)
    assert reason is not None and "permission denied" in reason


def test_dangling_symlink_is_named(mixed_root: Path) -> None:
    reason = _reason(mixed_root / "mixed" / "gone.jpg")
    assert reason is not None and "cannot read" in reason


def test_cache_makes_second_run_read_nothing(mixed_root: Path, tmp_path: Path) -> None:
    data = scan_image_folder(mixed_root)
    cache = tmp_path / "cache"
    first = verify_data(data, cache_dir=cache)
    second = verify_data(data, cache_dir=cache)
    assert first.bad == second.bad and len(first.bad) == 3
    unreadable = 1  # the dangling symlink fails its stat; such results are never cached
    assert (second.checked, second.cached) == (0, len(data) - unreadable)
    (mixed_root / "mixed" / "cut.jpg").write_bytes(_jpeg())  # repaired: size changes
    third = verify_data(data, cache_dir=cache)
    assert third.checked == 1 and len(third.bad) == 2
    deep = verify_data(data, cache_dir=cache, deep=True)  # header results do not stand for deep ones
    assert deep.checked == len(data) - len(deep.bad)


def test_prepare_data_error_lists_files_and_fix(mixed_root: Path) -> None:
    data = scan_image_folder(mixed_root)
    with pytest.raises(BadFilesError) as caught:
        prepare_data(data, on_bad_file="error", cache_dir=None)
    message = str(caught.value)
    assert "3 of" in message and "mixed/empty.jpg: empty file" in message
    assert "--on-bad-file skip" in message and "python -m dali_pipelines verify" in message
    bad_names = ("empty.jpg", "cut.jpg", "gone.jpg")
    assert set(caught.value.bad) == {str(mixed_root / "mixed" / n) for n in bad_names}


def test_prepare_data_error_message_is_capped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_all(root / "c", {f"bad{i:02d}.jpg": (lambda: b"") for i in range(25)})
    with pytest.raises(BadFilesError, match=r"\.\.\. and 5 more"):
        prepare_data(scan_image_folder(root), on_bad_file="error", cache_dir=None)


def test_prepare_data_skip_filters_and_says_where(mixed_root: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    data = scan_image_folder(mixed_root)
    with caplog.at_level(logging.WARNING, logger="dali_pipelines.verify"):
        clean = prepare_data(data, on_bad_file="skip", cache_dir=tmp_path / "cache")
    assert len(clean) == len(data) - 3 and clean.classes == data.classes
    assert dict(clean.samples).items() <= dict(data.samples).items()  # labels stay with their files
    (bad_list,) = (tmp_path / "cache").glob("bad-files-data-*.tsv")  # the root's hash tells sets apart
    assert len(bad_list.read_text().splitlines()) == 3
    assert f"skipping 3 of {len(data)}" in caplog.text and str(bad_list) in caplog.text


def test_two_sets_with_one_name_get_two_bad_lists(mixed_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "data"
    _write_all(other / "c", {"a.jpg": _jpeg, "empty.jpg": lambda: b""})
    for root in (mixed_root, other):
        prepare_data(scan_image_folder(root), on_bad_file="skip", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("bad-files-data-*.tsv"))) == 2


def test_skip_with_no_usable_file_says_so(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_all(root / "c", {"empty.jpg": lambda: b"", "html.jpg": lambda: b"<html>"})
    with pytest.raises(BadFilesError, match=r"No file under .* is usable") as caught:
        prepare_data(scan_image_folder(root), on_bad_file="skip", cache_dir=None)
    assert "--on-bad-file skip" not in str(caught.value)


@pytest.mark.parametrize("damage", ["not a database", "another version"])
def test_cache_that_does_not_read_as_this_format_is_rebuilt(mixed_root: Path, tmp_path: Path, damage: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    data = scan_image_folder(mixed_root)
    verify_data(data, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("verify-*.sqlite")
    if damage == "not a database":
        cache_file.write_bytes(b"{\"version\": 3, \"entries\": {}}" + bytes(4096))
    else:
        with sqlite3.connect(cache_file) as db:
            db.execute("UPDATE meta SET value = '0' WHERE name = 'version'")
    with caplog.at_level(logging.WARNING, logger="dali_pipelines.verify"):
        report = verify_data(data, cache_dir=tmp_path)
    assert report.cached == 0 and len(report.bad) == 3
    assert f"rebuilding verify cache {cache_file}" in caplog.text
    assert verify_data(data, cache_dir=tmp_path).checked == 0  # the rebuilt cache serves the next run


def test_cache_keeps_one_row_per_file_and_updates_what_changed(mixed_root: Path, tmp_path: Path) -> None:
    """The cache grows by what changed, and a run over unchanged files reads its listing alone."""
    data = scan_image_folder(mixed_root)
    verify_data(data, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("verify-*.sqlite")

    def rows() -> dict[str, str | None]:
        with sqlite3.connect(cache_file) as db:
            return dict(db.execute("SELECT name, reason FROM entries"))

    first = rows()
    assert len(first) == len(data) - 1  # the dangling symlink's read error is not kept
    (mixed_root / "mixed" / "cut.jpg").write_bytes(_jpeg())
    again = verify_data(data, cache_dir=tmp_path)
    assert (again.checked, again.cached) == (1, len(data) - 2)
    second = rows()
    assert second.keys() == first.keys() and second["mixed/cut.jpg"] is None
    assert {k: v for k, v in second.items() if k != "mixed/cut.jpg"} == {
        k: v for k, v in first.items() if k != "mixed/cut.jpg"}


def test_prepare_data_refuses_bad_arguments(mixed_root: Path) -> None:
    data = scan_image_folder(mixed_root)
    with pytest.raises(ValueError, match="on_bad_file must be 'error' or 'skip'"):
        prepare_data(data, on_bad_file="ignore", cache_dir=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        prepare_data(data, on_bad_file="skip", cache_dir=None, max_pixels=0)


def test_cli_lists_bad_files_writes_clean_list_exits_1(mixed_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lists" / "clean.txt"  # outside the data root
    assert main(["verify", str(mixed_root), "--clean-list", str(out), "--workers", "2"]) == 1
    printed = capsys.readouterr().out
    assert "mixed/empty.jpg: empty file" in printed and "truncated JPEG" in printed and "3 bad" in printed
    clean = read_file_list(out)  # paths relative to the list's folder, as DALI reads them
    assert len(clean) == len(ACCEPTED) + 1 and set(clean.files) <= set(scan_image_folder(mixed_root).files)
    assert main(["verify", str(out), "--deep"]) == 0  # its own output, without --root
    (out.parent / "elsewhere").mkdir()
    assert main(["verify", str(out), "--root", str(out.parent / "elsewhere")]) == 1  # --root is file_root


def test_cli_verifies_a_single_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, gif = tmp_path / "photo.jpg", tmp_path / "anim"  # no extension, binary: an image, not a list
    good.write_bytes(_jpeg())
    gif.write_bytes(_encode("GIF"))
    assert main(["verify", str(good)]) == 0
    assert "1 files checked (header pass)" in capsys.readouterr().out
    assert main(["verify", str(gif)]) == 1
    assert "anim: GIF content" in capsys.readouterr().out


def test_cli_verifies_each_split_of_a_split_root(sample_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(sample_root), "--clean-list", str(tmp_path / "clean.txt")]) == 0
    printed = capsys.readouterr().out
    assert "train: 72 files checked" in printed and "val: 24 files checked" in printed
    train, val = read_file_list(tmp_path / "clean-train.txt"), read_file_list(tmp_path / "clean-val.txt")
    assert train.samples == scan_image_folder(sample_root / "train").samples
    assert val.samples == scan_image_folder(sample_root / "val").samples


def test_cli_help_is_complete_at_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    from dali_pipelines.cli import get_args_parser

    parser = get_args_parser()
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in commands._choices_actions}
    assert set(helps) == set(commands.choices) == {"make-sample", "verify", "to-shards", "tune"}
    for name, sub in commands.choices.items():
        assert name in top and helps[name] and sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_cli_usage_errors_exit_2(mixed_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["verify", str(mixed_root), "--max-pixels", "0"])
    assert caught.value.code == 2
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert main(["verify", str(mixed_root), "--root", str(tmp_path)]) == 2  # --root is for file lists
