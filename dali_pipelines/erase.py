"""torchvision's ``RandomErasing`` (Zhong et al. 2017) as DALI operators: a box of each image set
to a fill value (0: the mean colour after normalization, torchvision's default), on the graph's
device.

torchvision draws, with probability p, up to 10 (area fraction, log aspect ratio) pairs and takes
the first whose box ``h = round(sqrt(A x r))``, ``w = round(sqrt(A / r))`` fits strictly inside the
image, at a uniform integer position; none fitting leaves the image as it is. DALI has no loop,
so the 10 attempts are drawn at once as vectors and the first fitting one is selected by
arithmetic: the same distribution, for the square crops the train graph emits.
"""

from __future__ import annotations

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.pipeline import DataNode

ATTEMPTS = 10  # torchvision's RandomErasing.get_params


def random_erase(images: DataNode, *, size: int, probability: float, scale: tuple[float, float],
                 ratio: tuple[float, float]) -> DataNode:
    """Erase one box per image with ``probability``: area ``scale`` of the ``size`` x ``size`` image,
    aspect (h/w) in ``ratio`` log-uniformly, filled with 0. Works on any layout with H and W axes;
    the box's arithmetic runs on the CPU (DALI's argument inputs), the erasing on ``images``' device."""
    area = float(size * size)
    fractions = fn.random.uniform(range=list(scale), shape=[ATTEMPTS])
    aspects = dmath.exp(fn.random.uniform(range=[float(np.log(ratio[0])), float(np.log(ratio[1]))],
                                          shape=[ATTEMPTS]))
    heights = dmath.floor(dmath.sqrt(fractions * area * aspects) + 0.5)  # round(); ties have measure 0
    widths = dmath.floor(dmath.sqrt(fractions * area / aspects) + 0.5)
    fits = (heights < size) & (widths < size)
    # The first fitting attempt scores highest: ATTEMPTS - index for a fit, 0 otherwise.
    order = types.Constant(np.arange(ATTEMPTS, 0, -1, dtype=np.float32))
    score = fn.cast(fits, dtype=types.FLOAT) * order
    best = fn.reductions.max(score)
    chosen = fn.cast(score == best, dtype=types.FLOAT) * fn.cast(best > 0, dtype=types.FLOAT)
    applied = fn.cast(fn.random.coin_flip(probability=probability), dtype=types.FLOAT)
    height = fn.reductions.sum(chosen * heights) * applied  # 0 x 0: nothing erased
    width = fn.reductions.sum(chosen * widths) * applied
    top = _position(size, height)
    left = _position(size, width)
    return fn.erase(images, anchor=fn.stack(top, left), shape=fn.stack(height, width), axis_names="HW",
                    fill_value=0.0)


def _position(size: int, extent: DataNode) -> DataNode:
    """A uniform integer in [0, size - extent], as ``torch.randint(0, size - extent + 1)``."""
    uniform = fn.random.uniform(range=[0.0, 1.0])
    return dmath.min(dmath.floor(uniform * (size - extent + 1.0)), size - extent)
