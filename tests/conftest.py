"""Shared fixtures: small real-photo JPEG data sets made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_pipelines import make_sample_dataset


def pytest_configure(config: pytest.Config) -> None:
    """Keep the verification cache of test runs out of the user's ~/.cache."""
    import os
    import tempfile

    os.environ.setdefault("DALI_PIPELINES_CACHE", tempfile.mkdtemp(prefix="dali-pipelines-cache-"))


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


@pytest.fixture(scope="session")
def val_root(sample_root: Path) -> Path:
    return sample_root / "val"


@pytest.fixture(scope="session")
def train_root(sample_root: Path) -> Path:
    return sample_root / "train"
