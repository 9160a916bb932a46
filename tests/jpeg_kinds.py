"""Real-photo JPEGs of every kind a decoder meets, and of every geometry the eval resize meets.

Shared by the graph tests (CPU here, GPU under ``@pytest.mark.gpu``): each file is cut from a
photograph that ships with scikit-image, so decoders and resizers see real content.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from dali_pipelines import ImageFolderData

EXIF_ORIENTATION = 0x0112


def photo(width: int, height: int, source: str = "astronaut") -> Image.Image:
    """A ``width`` x ``height`` RGB view of a scikit-image photograph (resized, aspect not kept)."""
    array = getattr(skdata, source)()
    image = Image.fromarray(array).convert("RGB")
    return image.resize((width, height), Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **{"quality": 90, **options})
    return out.getvalue()


def exif_rotated(image: Image.Image, orientation: int = 6) -> bytes:
    """Stored pixels as ``image``; EXIF says to rotate them (6: 90 degrees clockwise) for display."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return jpeg(image, exif=exif.tobytes())


_BASE = (320, 240)  # non-square, so a wrong orientation or transposition shows

# Every kind of JPEG the decoders must take, including the ones nvImageCodec's ROI decode on
# the GPU treats differently (chroma subsampling, progressive, restart markers, CMYK, tiny).
EDGE_KINDS: dict[str, Callable[[], bytes]] = {
    "baseline_444": lambda: jpeg(photo(*_BASE), subsampling=0),
    "baseline_422": lambda: jpeg(photo(*_BASE, "coffee"), subsampling=1),
    "baseline_420": lambda: jpeg(photo(*_BASE, "chelsea"), subsampling=2),
    "progressive_420": lambda: jpeg(photo(*_BASE, "rocket"), subsampling=2, progressive=True),
    "progressive_444": lambda: jpeg(photo(*_BASE), subsampling=0, progressive=True),
    "grayscale": lambda: jpeg(photo(*_BASE, "camera").convert("L")),
    "cmyk": lambda: jpeg(photo(*_BASE, "coffee").convert("CMYK")),
    "exif_rotated": lambda: exif_rotated(photo(*_BASE, "chelsea")),
    "restart_blocks": lambda: jpeg(photo(*_BASE), subsampling=2, restart_marker_blocks=3),
    "restart_rows": lambda: jpeg(photo(*_BASE, "rocket"), subsampling=1, restart_marker_rows=1),
    "tiny_1x1": lambda: jpeg(photo(1, 1)),
    "tiny_7x5": lambda: jpeg(photo(7, 5, "chelsea"), subsampling=2),
    "large_4000x3000": lambda: jpeg(photo(4000, 3000, "coffee"), quality=85, subsampling=2),
}

# (width, height): landscape, portrait, square; shorter side below, at and above 256;
# extreme aspects; odd and even crop excess on both axes (torchvision rounds x.5 to even).
GEOMETRIES: tuple[tuple[int, int], ...] = (
    (500, 375), (375, 500), (300, 300), (256, 256), (256, 341), (341, 256),
    (200, 150), (150, 200), (240, 240), (225, 225), (257, 333), (333, 257),
    (1024, 256), (240, 960), (999, 401), (401, 999), (281, 259), (640, 427),
)
_SOURCES = ("astronaut", "chelsea", "coffee", "rocket")


@functools.cache
def _edge_kind_files() -> dict[str, bytes]:
    """Encoded once per test session (the 4000 x 3000 one takes a while)."""
    return {f"{name}.jpg": make() for name, make in EDGE_KINDS.items()}


def write_edge_kinds(folder: Path) -> ImageFolderData:
    """One file per kind in ``folder``; label i is ``EDGE_KINDS``' i-th kind."""
    return _write(folder, _edge_kind_files())


def write_geometries(folder: Path) -> ImageFolderData:
    """One JPEG per ``GEOMETRIES`` entry (4:2:0, 4:2:2, 4:4:4 and progressive in turn)."""
    styles = ({"subsampling": 2}, {"subsampling": 1}, {"subsampling": 0}, {"progressive": True})
    files = {}
    for i, (width, height) in enumerate(GEOMETRIES):
        image = photo(width, height, _SOURCES[i % len(_SOURCES)])
        files[f"{width}x{height}.jpg"] = jpeg(image, quality=85 + i % 10, **styles[i % len(styles)])
    return _write(folder, files)


def _write(folder: Path, files: dict[str, bytes]) -> ImageFolderData:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        (folder / name).write_bytes(content)
        paths.append(str(folder / name))
    return ImageFolderData(root=folder, files=tuple(paths), labels=tuple(range(len(paths))),
                           classes=tuple(Path(p).stem for p in paths))


def stored_pixels(path: str) -> np.ndarray:
    """The file's pixels as torchvision's ImageFolder reads them: PIL, RGB, EXIF not applied."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
