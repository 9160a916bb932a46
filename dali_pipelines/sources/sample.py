"""A sample ImageFolder data set cut from real photographs that ship with scikit-image.

Each class draws from its own source photographs, so the classes are learnable; every image
is a random crop resized to an ImageNet-like size (shorter side 300-500 px) and saved as
JPEG with varied quality, chroma subsampling (4:2:0 / 4:2:2 / 4:4:4) and some progressive
files, so decoders meet the variety of a real data set.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dali_pipelines.errors import DatasetError

_logger = logging.getLogger(__name__)

# class name -> photographs in skimage/data. The texture class stays grayscale on disk so the
# decoders' grayscale -> RGB path is exercised too.
SOURCE_PHOTOS: dict[str, tuple[str, ...]] = {
    "astronaut": ("astronaut.png",),
    "cat": ("chelsea.png",),
    "coffee": ("coffee.png",),
    "motorcycle": ("motorcycle_left.png", "motorcycle_right.png"),
    "retina": ("retina.jpg",),
    "rocket": ("rocket.jpg",),
    "space": ("hubble_deep_field.jpg",),
    "texture": ("brick.png", "grass.png", "gravel.png"),
}
GRAYSCALE_CLASSES = frozenset({"texture"})
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}  # PIL's codes


@dataclass(frozen=True)
class JpegStyle:
    """How one sample is encoded."""

    quality: int
    subsampling: str
    progressive: bool


def photo_dir() -> Path:
    """The folder of scikit-image's bundled photographs (installed with the ``sample`` extra)."""
    try:
        import skimage.data
    except ImportError as err:
        raise DatasetError(
            "making the sample data set needs scikit-image; install it with "
            "`pip install 'dali-pipelines[sample]'` (make demo does)"
        ) from err
    return Path(skimage.data.__file__).parent


def load_photos() -> dict[str, list[Image.Image]]:
    """The source photographs per class, RGB (or L for grayscale classes)."""
    folder = photo_dir()
    photos: dict[str, list[Image.Image]] = {}
    for name, files in SOURCE_PHOTOS.items():
        mode = "L" if name in GRAYSCALE_CLASSES else "RGB"
        photos[name] = []
        for file in files:
            path = folder / file
            if not path.is_file():
                raise DatasetError(f"photograph {path} is missing from scikit-image; reinstall it")
            with Image.open(path) as img:
                photos[name].append(img.convert(mode))
    return photos


def random_style(rng: random.Random) -> JpegStyle:
    """Quality 75-95; 4:2:0 most often, as in ImageNet; one file in six progressive."""
    subsampling = rng.choices(list(SUBSAMPLING), weights=[3, 1, 6])[0]
    return JpegStyle(quality=rng.randint(75, 95), subsampling=subsampling,
                     progressive=rng.random() < 1 / 6)


@dataclass(frozen=True)
class View:
    """Where one sample is cut from its photograph and how it is changed."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    flip: bool
    size: tuple[int, int]  # after the resize
    gain: float  # brightness factor


def random_view_of(size: tuple[int, int], rng: random.Random) -> View:
    """A random crop of a ``size`` photograph (30-100% of the area, aspect 3/4-4/3), maybe
    flipped, resized so the shorter side is 300-500 px, with a mild brightness change."""
    width, height = size
    area = width * height * rng.uniform(0.3, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    crop_w = min(width, round((area * aspect) ** 0.5))
    crop_h = min(height, round((area / aspect) ** 0.5))
    left = rng.randint(0, width - crop_w)
    top = rng.randint(0, height - crop_h)
    flip = rng.random() < 0.5
    shorter = rng.randint(300, 500)
    scale = shorter / min(crop_w, crop_h)
    resized = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    return View((left, top, left + crop_w, top + crop_h), flip, resized, rng.uniform(0.8, 1.2))


def render_view(photo: Image.Image, view: View) -> Image.Image:
    """``view`` of ``photo``: cropped, flipped, resized (bicubic), brightness scaled."""
    image = photo.crop(view.box)
    if view.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.resize(view.size, Image.Resampling.BICUBIC)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * view.gain, 0, 255).astype(np.uint8))


def random_view(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random view of ``photo`` (``random_view_of``), rendered."""
    return render_view(photo, random_view_of(photo.size, rng))


def save_jpeg(image: Image.Image, path: Path, style: JpegStyle) -> None:
    """Write ``image`` as a JPEG in ``style`` (subsampling only applies to colour images)."""
    kwargs = {"quality": style.quality, "progressive": style.progressive, "optimize": False}
    if image.mode == "RGB":
        kwargs["subsampling"] = SUBSAMPLING[style.subsampling]
    image.save(path, format="JPEG", **kwargs)


@dataclass(frozen=True)
class _Sample:
    """One file of the sample set: everything drawn at random, decided before any is written."""

    path: Path
    name: str  # class
    photo: int  # index into the class's photographs
    view: View
    style: JpegStyle


def _draw_samples(out: Path, images: int, val_fraction: float, seed: int,
                  photos: dict[str, list[Image.Image]]) -> list[_Sample]:
    """Every file's draws from one generator, in file order (so the set is the same however
    many processes write it)."""
    rng = random.Random(seed)
    classes = sorted(photos)
    samples = []
    for index in range(images):
        name = classes[index % len(classes)]
        per_class = index // len(classes)
        split = "val" if (per_class % round(1 / val_fraction)) == 0 else "train"
        photo = rng.choice(range(len(photos[name])))  # the same draw as choice(photos[name])
        view = random_view_of(photos[name][photo].size, rng)
        samples.append(_Sample(out / split / name / f"{name}_{per_class:05d}.jpg", name, photo, view,
                               random_style(rng)))
    return samples


_PHOTOS: dict[str, list[Image.Image]] = {}  # a writer process's photographs (inherited at fork)


def _use_photos(photos: dict[str, list[Image.Image]]) -> None:
    _PHOTOS.update(photos)


def _write(sample: _Sample) -> None:
    save_jpeg(render_view(_PHOTOS[sample.name][sample.photo], sample.view), sample.path, sample.style)


def make_sample_dataset(out: str | os.PathLike[str], images: int = 2000, *,
                        val_fraction: float = 0.2, seed: int = 0, workers: int = 1) -> Path:
    """Write ``out/train`` and ``out/val`` ImageFolder trees with ``images`` JPEGs in total,
    encoded by ``workers`` processes (forked; 1: this process).

    Deterministic for a given ``seed``, whatever ``workers``. Refuses a non-empty ``out`` to
    avoid mixing sets.
    """
    if images < 2 * len(SOURCE_PHOTOS):
        raise ValueError(f"images must be at least {2 * len(SOURCE_PHOTOS)} (two per class), got {images}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; pick a new folder or delete it")
    photos = load_photos()
    samples = _draw_samples(out, images, val_fraction, seed, photos)
    for folder in sorted({sample.path.parent for sample in samples}):
        folder.mkdir(parents=True, exist_ok=True)
    if workers == 1:
        _use_photos(photos)
        for sample in samples:
            _write(sample)
    else:
        # Forked: the writers inherit the decoded photographs instead of receiving copies.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_use_photos,
                                 initargs=(photos,)) as pool:
            for _ in pool.map(_write, samples, chunksize=max(1, len(samples) // (8 * workers))):
                pass
    _logger.info("wrote %d JPEGs in %d classes to %s", images, len(photos), out)
    return out
