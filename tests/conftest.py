"""Shared fixtures: small real-photo JPEG data sets made once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dali_pipelines import make_sample_dataset


def pytest_configure(config: pytest.Config) -> None:
    """Keep the verification cache of test runs out of the user's ~/.cache; run torch's CPU work on
    one intra-op thread, here and in the processes the tests start.

    The tests' models are tiny and share the cores with DALI's threads: a second OpenMP thread
    spin-waits for the busy cores, so a GoogLeNet run on 2 cores took several times the CPU time
    and wall time it takes on one (docs/development.md has the measurement).
    """
    import os
    import tempfile

    os.environ.setdefault("DALI_PIPELINES_CACHE", tempfile.mkdtemp(prefix="dali-pipelines-cache-"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests, with the reason, where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder set of 8 classes and 96 JPEGs: 72 in train/, 24 in val/ (3 per class)."""
    root = tmp_path_factory.mktemp("sample") / "data"
    make_sample_dataset(root, images=96, seed=1)
    return root


# Three visually distinct classes of the sample set, for the training and source tests.
TINY_CLASSES = ("astronaut", "space", "texture")


@pytest.fixture(scope="module")
def tiny_root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY_CLASSES of the sample set as a split root: 27 train and 9 val JPEGs (a module may
    define its own, e.g. with bad files added)."""
    root = tmp_path_factory.mktemp("tiny")
    for split in ("train", "val"):
        for name in TINY_CLASSES:
            shutil.copytree(sample_root / split / name, root / split / name)
    return root


@pytest.fixture(scope="module")
def flat(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unsplit folder of class folders, no train/ or val/: TINY_CLASSES, 12 JPEGs each."""
    root = tmp_path_factory.mktemp("flat") / "photos"
    for name in TINY_CLASSES:
        for split in ("train", "val"):
            shutil.copytree(sample_root / split / name, root / name, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="session")
def val_root(sample_root: Path) -> Path:
    return sample_root / "val"


@pytest.fixture(scope="session")
def train_root(sample_root: Path) -> Path:
    return sample_root / "train"


# --- object storage: one real S3 server (SeaweedFS) for the whole session -----------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """SeaweedFS serving S3 on 127.0.0.1, the AWS variables of this process pointing at it. DALI
    reads AWS_ENDPOINT_URL once per process, so every S3 test shares this one endpoint (a test
    that stops the server starts it again on the same port)."""
    from bench.s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3server")).start()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            patch.delenv(name, raising=False)
        for name, value in server.env().items():
            patch.setenv(name, value)
        yield server
    server.stop(grace_s=0)  # its data goes with the session


@pytest.fixture(scope="session")
def s3_sample(s3_server, sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The sample set in bucket "data": loose at s3://data/sample, as shards (20 images per shard)
    at s3://data/shards; and the local shards they were uploaded from."""
    from dali_pipelines import convert_dataset

    shards = tmp_path_factory.mktemp("s3shards") / "shards"
    convert_dataset(sample_root, shards, images_per_shard=20, progress=False)
    s3_server.upload_tree(sample_root, "data", "sample")
    s3_server.upload_tree(shards, "data", "shards")
    return {"loose": "s3://data/sample", "shards": "s3://data/shards", "local_shards": shards}
