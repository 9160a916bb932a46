"""Data in a bucket of a real S3 server (SeaweedFS on 127.0.0.1, started once per session): the
listing in torchvision's order, shards checked before DALI, the ranged header pass cached by
ETag, and the endpoint rules DALI's S3 client imposes."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import Pipeline, fn
from PIL import Image

from dali_pipelines import (
    DatasetError,
    PipelineConfig,
    make_loader,
    open_source,
    scan_image_folder,
    verify_data,
)
from dali_pipelines.cli import main as verify_main
from dali_pipelines.sources.bucket import bucket_client
from dali_pipelines.sources.s3 import S3ImageFolder, S3Shards, read_failure
from dali_pipelines.sources.webdataset import open_shards
from dali_pipelines.verify.headers import check_stream
from dali_pipelines.verify.remote import HEAD_BYTES, RangedObject


def _relative(files: tuple[str, ...], root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    assert all(f.startswith(prefix) for f in files)
    return [f.removeprefix(prefix) for f in files]


@pytest.fixture(scope="module")
def odd_tree(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of the sample set with nested folders whose names sort differently as paths
    and as strings ("a" < "a-b" < "a/b"), an upper-case extension, a non-image and a stray
    top-level file."""
    root = tmp_path_factory.mktemp("odd") / "tree"
    for name in ("space", "texture"):
        shutil.copytree(sample_root / "train" / name, root / name)
    some = sorted((sample_root / "val" / "space").iterdir())
    for sub, image in zip(("a", "a-b", "a/b"), some, strict=True):
        (root / "space" / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / "space" / sub / "x.jpg")
    shutil.copy(some[0], root / "texture" / "UPPER.JPG")
    (root / "texture" / "notes.txt").write_text("not an image\n")
    (root / "README").write_text("a file beside the class folders\n")
    return root


def test_bucket_tree_lists_as_torchvision_scans_it_on_disk(s3_server, odd_tree: Path) -> None:
    """Same classes, files, order and labels from the listing as from scanning the same tree."""
    s3_server.upload_tree(odd_tree, "data", "odd")
    remote, local = open_source("s3://data/odd"), scan_image_folder(odd_tree)
    assert isinstance(remote, S3ImageFolder) and remote.classes == local.classes == ("space", "texture")
    assert _relative(remote.files, "s3://data/odd") == _relative(local.files, str(local.root))
    assert remote.labels == local.labels and len(remote) == 9 + 3 + 9 + 1
    assert remote.sizes == tuple(Path(f).stat().st_size for f in local.files)


def test_split_prefixes_and_missing_data_are_named(s3_sample: dict) -> None:
    assert len(open_source(s3_sample["loose"], split="train")) == 72
    with pytest.raises(DatasetError, match=r"no objects under s3://data/sample/test at "
                                           r"http://127\.0\.0\.1:\d+; pass a data root with a test/ folder"):
        open_source(s3_sample["loose"], split="test")
    with pytest.raises(DatasetError, match=r"listing s3://no-such-bucket/x at http://127\.0\.0\.1:\d+: "
                                           "the bucket does not exist there"):
        open_source("s3://no-such-bucket/x")
    with pytest.raises(DatasetError, match=r"holds \.tar shards, not class folders"):
        open_source(s3_sample["shards"], "folder", split="train")


def test_shards_in_a_bucket_open_as_on_disk(s3_sample: dict) -> None:
    """Index, listed size and manifest checked through boto3; DALI gets s3:// shards and indexes."""
    remote = open_source(s3_sample["shards"], split="train")
    local = open_shards(s3_sample["local_shards"] / "train")
    assert isinstance(remote, S3Shards)
    assert (remote.classes, remote.shard_samples, remote.shard_bytes) == (
        local.classes, local.shard_samples, local.shard_bytes)
    assert remote.shards[0] == "s3://data/shards/train/shard-000000.tar"
    assert remote.index_files[0] == "s3://data/shards/train/shard-000000.idx"


def test_cut_and_replaced_shards_are_refused_naming_the_object(s3_server, s3_sample: dict,
                                                               tmp_path: Path) -> None:
    """A shard cut short fails its index check at open; one replaced after opening fails before the
    graph is built (DALI would otherwise die mid-epoch with an error naming no file)."""
    cut = tmp_path / "cut"
    shutil.copytree(s3_sample["local_shards"] / "train", cut)
    tar = cut / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    s3_server.upload_tree(cut, "data", "cut")
    with pytest.raises(DatasetError, match=r"shard s3://data/cut/shard-000001\.tar is truncated: its index "
                                           r"reaches byte \d+ but the file has \d+ bytes"):
        open_source("s3://data/cut")
    s3_server.upload_tree(s3_sample["local_shards"] / "train", "data", "swap")
    shards = open_source("s3://data/swap")
    s3_server.client().put_object(Bucket="data", Key="swap/shard-000002.tar", Body=b"x" * 1024)
    cfg = PipelineConfig(batch_size=8, device="cpu", num_threads=1, crop_size=32, resize_size=36)
    with pytest.raises(DatasetError, match=r"shard s3://data/swap/shard-000002\.tar changed size since it "
                                           r"was opened \(\d+ -> 1024 bytes\)"):
        make_loader(shards, cfg, train=False)


@pytest.fixture(scope="module")
def bad_tree(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good JPEGs and three that would stop DALI: cut short, empty, and text under a .jpg name."""
    root = tmp_path_factory.mktemp("bad") / "tree"
    shutil.copytree(sample_root / "val" / "space", root / "space")
    good = sorted((root / "space").iterdir())[0].read_bytes()
    (root / "space" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "space" / "empty.jpg").write_bytes(b"")
    (root / "space" / "text.jpg").write_text("hello\n")
    return root


def test_verify_in_a_bucket_finds_what_it_finds_on_disk_and_caches_by_etag(
        s3_server, bad_tree: Path, tmp_path: Path) -> None:
    """The ranged header pass gives each object the reason the local pass gives the file; a second
    run reads nothing; an object uploaded again with other content (a new ETag) is read again."""
    s3_server.upload_tree(bad_tree, "data", "bad")
    local = verify_data(scan_image_folder(bad_tree), cache_dir=tmp_path / "local")
    remote_data = open_source("s3://data/bad")
    first = verify_data(remote_data, cache_dir=tmp_path / "remote")
    assert dict(first.named_bad()) == dict(local.named_bad()) and len(first.bad) == 3
    assert first.checked == len(remote_data) == 6 and first.cached == 0
    again = verify_data(remote_data, cache_dir=tmp_path / "remote")
    assert again.checked == 0 and again.cached == 6 and again.bad == first.bad
    good = sorted((bad_tree / "space").glob("space_*.jpg"))[0]
    s3_server.client().upload_file(str(good), "data", "bad/space/cut.jpg")
    fixed = verify_data(open_source("s3://data/bad"), cache_dir=tmp_path / "remote")
    assert fixed.checked == 1 and fixed.cached == 5 and len(fixed.bad) == 2
    assert first.clean().files == tuple(f for f in remote_data.files if f not in first.bad)


def test_verify_command_takes_a_bucket(s3_server, bad_tree: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``verify s3://...`` lists what is bad and writes a clean list that DALI reads with the
    bucket's prefix as its file_root."""
    s3_server.upload_tree(bad_tree, "data", "bad-cli")
    clean = tmp_path / "clean.txt"
    assert verify_main(["verify", "s3://data/bad-cli", "--clean-list", str(clean)]) == 1
    out = capsys.readouterr().out
    assert "space/empty.jpg: empty file (0 bytes)" in out
    assert "6 files checked (header pass) under s3://data/bad-cli: 3 ok, 3 bad" in out
    assert f"fn.readers.file(file_list='{clean}', file_root='s3://data/bad-cli')" in out
    lines = clean.read_text().splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"space/space_\d+\.jpg 0", line) for line in lines)
    pipe = Pipeline(batch_size=3, num_threads=1, device_id=None)
    with pipe:  # DALI reads the list's objects from the bucket
        pipe.set_outputs(*fn.readers.file(file_list=str(clean), file_root="s3://data/bad-cli"))
    pipe.build()
    encoded, _ = pipe.run()
    assert sorted(len(np.array(e)) for e in encoded) == sorted(
        p.stat().st_size for p in (bad_tree / "space").glob("space_*.jpg"))


def test_header_pass_reads_the_head_and_tail_of_a_large_object(s3_server) -> None:
    """A 2-megapixel noise JPEG (over a megabyte): the header pass fetches its first block and its
    tail, two ranged GETs, not the whole object."""
    pixels = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="JPEG", quality=95)
    s3_server.client().put_object(Bucket="data", Key="large/noise.jpg", Body=encoded.getvalue())
    size = len(encoded.getvalue())
    assert size > 16 * HEAD_BYTES
    with RangedObject(bucket_client(), "s3://data/large/noise.jpg", size) as stream:
        header = check_stream(stream, size, max_pixels=10**8)
        assert header.reason is None and header.pixels == 1600 * 1200 and not header.needs_decode
        assert stream.requests == 2 and stream.bytes_fetched == HEAD_BYTES + 4096


def test_endpoint_dali_cannot_use_is_refused_with_what_to_set(s3_sample: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """DALI takes the endpoint from AWS_ENDPOINT_URL only, puts the bucket into the host name, and
    keeps the first endpoint it read: each case is one line saying what to set, before any work."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    port = endpoint.rsplit(":", 1)[1]
    open_source(s3_sample["loose"], split="val")  # this process's DALI endpoint is the server's
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://localhost:{port}")
    with pytest.raises(DatasetError, match=rf"AWS_ENDPOINT_URL=http://localhost:{port} names the host "
                                           rf"'localhost', but DALI addresses buckets virtual-host style "
                                           rf"\(data\.localhost\) and needs an IP literal there: set "
                                           rf"AWS_ENDPOINT_URL=http://127\.0\.0\.1:{port}"):
        open_source(s3_sample["loose"], split="val")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    with pytest.raises(DatasetError, match=rf"DALI takes its S3 endpoint only from AWS_ENDPOINT_URL "
                                           rf"\(unset\); set AWS_ENDPOINT_URL=http://127\.0\.0\.1:{port}"):
        open_source(s3_sample["loose"], split="val")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.2:{port}")
    with pytest.raises(DatasetError, match=r"DALI keeps the endpoint it first read"):
        open_source(s3_sample["loose"], split="val")


# DALI 2.4's messages for a reader that lost its S3 endpoint: after a HEAD request (the object is
# named) and after a ranged GET (it is not).
_FAILED = """Critical error in pipeline:
Error in CPU operator `nvidia.dali.fn.readers.file`,
which was used in the pipeline definition with the following traceback:

  File "graphs.py", line 79, in train_graph

encountered:

{head}: curlCode: 7, Could not connect to server; Details: Failed to connect to 127.0.0.1:9 after 0 ms: \
Could not connect to server
Current pipeline object is no longer valid."""
_OBJECT = "sample/train/space/space_00004.jpg"
_HEAD_FAILED = _FAILED.format(head=f"S3 Object not found. bucket=data object={_OBJECT}:\n")
_GET_FAILED = _FAILED.format(head="")


def test_read_failure_names_the_endpoint_and_the_object(s3_sample: dict, val_root: Path) -> None:
    """DALI's message about a bucket's object on one line; other errors, and local data, untouched."""
    data = open_source(s3_sample["loose"], split="val")
    named = read_failure(RuntimeError(_HEAD_FAILED), data)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    assert str(named) == (f"DALI failed to read s3://data/{_OBJECT} from the S3 endpoint {endpoint}: "
                          "curlCode: 7, Could not connect to server; Details: Failed to connect to "
                          "127.0.0.1:9 after 0 ms: Could not connect to server")
    unnamed = str(read_failure(RuntimeError(_GET_FAILED), data))
    assert "an object under s3://data/sample/val/ (DALI's reader does not say which)" in unnamed
    assert "\n" not in unnamed
    assert read_failure(RuntimeError("Critical error in pipeline: Error in CPU operator "
                                     "`nvidia.dali.fn.decoders.image`"), data) is None
    assert read_failure(RuntimeError(_HEAD_FAILED), scan_image_folder(val_root)) is None
