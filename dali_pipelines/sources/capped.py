"""Capped resolution (FFCV's ``max_resolution``): images whose longer side exceeds a cap are
re-encoded smaller as JPEG, so every epoch decodes fewer pixels; the others are kept byte for byte.

A re-encoded image keeps its aspect ratio (longer side = the cap), its EXIF orientation tag and
its ICC profile; pixels are resampled with Lanczos after an integer box reduction
(``reducing_gap``), and written as baseline 4:2:0 JPEG at the chosen quality (baseline: the
only kind the A100/H100 hardware decoder takes). The same file, cap and quality give the same
bytes with the same Pillow build.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dali_pipelines.errors import DatasetError

DEFAULT_QUALITY = 90  # FFCV's ImageNet datasets (write_imagenet.py's jpeg_quality)
CAPPED_EXT = "jpg"  # the member extension of a re-encoded image, whatever its source format
# A box reduction first by the largest integer factor that leaves at least this many times the
# target size, then Lanczos: Pillow's documented trade (3.0 is indistinguishable from a plain
# Lanczos resize in most cases) at a fraction of the cost on large photos.
_REDUCING_GAP = 3.0
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ResolutionCap:
    """Re-encode images whose longer side exceeds ``max_side`` px as JPEG at ``quality``."""

    max_side: int
    quality: int = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        if isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or self.max_side < 1:
            raise ValueError(f"max_side must be a positive integer, got {self.max_side!r}")
        quality = self.quality
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ValueError(f"quality must be an integer from 1 to 100, got {self.quality!r}")

    def record(self) -> dict[str, int]:
        """What the manifest and each shard record say about the cap."""
        return {"max_side": self.max_side, "quality": self.quality}


def capped_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """The size with the longer side at ``max_side`` and the aspect kept; None when within the cap."""
    longer = max(width, height)
    if longer <= max_side:
        return None
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))


def capped_image(path: str | Path, cap: ResolutionCap) -> bytes | None:
    """``path`` re-encoded under ``cap``, or None when it is within the cap (store it as it is)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            size = capped_size(width, height, cap.max_side)
            if size is None:
                return None
            image.load()
            return _encode(image, size, cap.quality)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path} cannot be re-encoded under --max-side {cap.max_side} ({err}); "
                           "re-encode or remove it, or convert without --max-side") from err


def _encode(image: Image.Image, size: tuple[int, int], quality: int) -> bytes:
    exif = image.getexif()
    orientation = exif.get(_ORIENTATION_TAG)
    icc = image.info.get("icc_profile")
    pixels = _eight_bit(image).resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    kept = Image.Exif()
    if orientation not in (None, 1):  # DALI's adjust_orientation (and PIL's exif_transpose) read it
        kept[_ORIENTATION_TAG] = orientation
    out = io.BytesIO()
    pixels.save(out, format="JPEG", quality=quality, subsampling="4:2:0", progressive=False,
                optimize=False, exif=kept.tobytes() if len(kept) else b"", icc_profile=icc)
    return out.getvalue()


def _eight_bit(image: Image.Image) -> Image.Image:
    """Grayscale stays L, everything else becomes RGB (as DALI decodes it); 16-bit gray is scaled,
    not clipped (Pillow's own conversion clips it at 255)."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode.startswith("I;16") or image.mode == "I":  # "I": how some Pillow builds read 16-bit PNG
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray((values * 255 // 65535).astype(np.uint8), mode="L")
    if image.mode in ("LA", "La", "1"):
        return image.convert("L")
    return image.convert("RGB")
