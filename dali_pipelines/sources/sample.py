"""A sample ImageFolder data set cut from real photographs that ship with scikit-image.

Each class draws from its own source photographs, so the classes are learnable; every image
is a random crop resized to an ImageNet-like size (shorter side 300-500 px) and saved as
JPEG with varied quality, chroma subsampling (4:2:0 / 4:2:2 / 4:4:4) and some progressive
files, so decoders meet the variety of a real data set.
"""

from __future__ import annotations

import logging
import os
import random
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


def random_view(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (30-100% of the area, aspect 3/4-4/3), maybe flipped, resized so the
    shorter side is 300-500 px, with a mild brightness change."""
    width, height = photo.size
    area = width * height * rng.uniform(0.3, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    crop_w = min(width, round((area * aspect) ** 0.5))
    crop_h = min(height, round((area / aspect) ** 0.5))
    left = rng.randint(0, width - crop_w)
    top = rng.randint(0, height - crop_h)
    view = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    shorter = rng.randint(300, 500)
    scale = shorter / min(crop_w, crop_h)
    view = view.resize((max(1, round(crop_w * scale)), max(1, round(crop_h * scale))),
                       Image.Resampling.BICUBIC)
    gain = rng.uniform(0.8, 1.2)
    return Image.fromarray(np.clip(np.asarray(view, dtype=np.float32) * gain, 0, 255).astype(np.uint8))


def save_jpeg(image: Image.Image, path: Path, style: JpegStyle) -> None:
    """Write ``image`` as a JPEG in ``style`` (subsampling only applies to colour images)."""
    kwargs = {"quality": style.quality, "progressive": style.progressive, "optimize": False}
    if image.mode == "RGB":
        kwargs["subsampling"] = SUBSAMPLING[style.subsampling]
    image.save(path, format="JPEG", **kwargs)


def make_sample_dataset(out: str | os.PathLike[str], images: int = 2000, *,
                        val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write ``out/train`` and ``out/val`` ImageFolder trees with ``images`` JPEGs in total.

    Deterministic for a given ``seed``. Refuses a non-empty ``out`` to avoid mixing sets.
    """
    if images < 2 * len(SOURCE_PHOTOS):
        raise ValueError(f"images must be at least {2 * len(SOURCE_PHOTOS)} (two per class), got {images}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; pick a new folder or delete it")
    rng = random.Random(seed)
    photos = load_photos()
    classes = sorted(photos)
    for index in range(images):
        name = classes[index % len(classes)]
        per_class = index // len(classes)
        split = "val" if (per_class % round(1 / val_fraction)) == 0 else "train"
        folder = out / split / name
        folder.mkdir(parents=True, exist_ok=True)
        view = random_view(rng.choice(photos[name]), rng)
        save_jpeg(view, folder / f"{name}_{per_class:05d}.jpg", random_style(rng))
    _logger.info("wrote %d JPEGs in %d classes to %s", images, len(classes), out)
    return out
