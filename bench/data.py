"""Which images a benchmark reads: any ImageFolder root, or a sample set made on the spot."""

from __future__ import annotations

import logging
from pathlib import Path

from dali_pipelines import (
    DatasetError,
    ImageFolderData,
    default_cache_dir,
    make_sample_dataset,
    prepare_data,
    scan_image_folder,
)

_logger = logging.getLogger(__name__)
JPEG_SUFFIXES = (".jpg", ".jpeg")


def image_folder_root(path: Path) -> Path:
    """``path/train`` when ``path`` holds train/ and val/ splits, else ``path`` itself."""
    if (path / "train").is_dir() and (path / "val").is_dir():
        return path / "train"
    return path


def make_temp_sample(images: int, parent: Path) -> Path:
    """A sample set of ``images`` real-photo JPEGs under ``parent`` (a temp dir); its train/ folder."""
    root = parent / "sample"
    _logger.info("no --data given: making a %d-image sample set in %s", images, root)
    make_sample_dataset(root, images=images, seed=0)
    return root / "train"


def load_jpeg_folder(root: Path, *, on_bad_file: str = "error") -> ImageFolderData:
    """Scan and verify ``root`` (cached); every file must be a JPEG, since the backends compare
    JPEG decoders. A bad file would kill the DALI backends mid-measurement, so it stops the run
    before any job (``error``) or is left out of every backend alike (``skip``)."""
    data = scan_image_folder(root)
    others = [f for f in data.files if not f.lower().endswith(JPEG_SUFFIXES)]
    if others:
        raise DatasetError(
            f"--data {root}: {len(others)} of {len(data)} files are not JPEG (e.g. {others[0]}); "
            "the benchmark compares JPEG decoders, so pass a JPEG-only ImageFolder")
    return prepare_data(data, on_bad_file=on_bad_file, cache_dir=default_cache_dir())
