"""Mixup and cutmix of whole batches on the device the batch is on, with soft targets for the loss.

Each batch is paired with itself flipped along the batch axis (sample i with sample N-1-i), so no
permutation is drawn and nothing leaves the device. Every random number (whether to mix, which of
the two, lambda, the cutmix box) is drawn on the host from this rank's own ``torch.Generator``,
whose state the checkpoint keeps: a resumed run mixes exactly as an uninterrupted one would, and
no draw waits for the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixedBatch:
    """A batch after mixing: model input, soft targets for the loss, labels train top-1 scores against."""

    images: torch.Tensor  # same shape, dtype, device and memory format as the input
    targets: torch.Tensor  # [N, classes] float32 probabilities, each row summing to 1
    labels: torch.Tensor  # [N] the label holding the larger share of each mixed sample
    lam: float  # share of each sample's own image (1.0: not mixed)
    kind: str  # "mixup", "cutmix" or "none"


@dataclass(frozen=True)
class CutBox:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an image (half-open), clipped to its borders."""

    y0: int
    y1: int
    x0: int
    x1: int

    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def soft_targets(labels: torch.Tensor, num_classes: int, lam: float) -> torch.Tensor:
    """``lam`` x one-hot(labels) + (1 - lam) x one-hot(labels flipped), float32, on labels' device.

    Built with ``scatter_`` rather than ``one_hot``, which checks the labels' range on the host
    on some devices (a host<->device sync). Label smoothing is left to the loss: smoothing a
    mixed target is the same as mixing smoothed targets.
    """
    one_hot = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
    one_hot.scatter_(1, labels[:, None], 1.0)
    return torch.lerp(one_hot.flip(0), one_hot, lam)


def mixup(images: torch.Tensor, lam: float) -> torch.Tensor:
    """Every pixel ``lam`` x its own + (1 - lam) x the flipped batch's; a new tensor, input untouched."""
    return torch.lerp(images.flip(0), images, lam)


def cutmix(images: torch.Tensor, box: CutBox) -> torch.Tensor:
    """The flipped batch's pixels inside ``box`` pasted over each image; a new tensor.

    ``images`` is NCHW as the model sees it, whatever its memory format (on the GPU, NHWC storage
    viewed as channels-last NCHW): the box cuts the last two axes, height and width.
    """
    out = images.clone()  # keeps the memory format (channels_last stays channels_last)
    region = (slice(None), slice(None), slice(box.y0, box.y1), slice(box.x0, box.x1))
    out[region] = images[region].flip(0)
    return out


class BatchMixer:
    """Mixup (``mixup_alpha``) and/or cutmix (``cutmix_alpha``) per batch, as timm's ``Mixup`` in
    "batch" mode: lambda ~ Beta(alpha, alpha); with both on, cutmix is chosen with probability
    ``switch_prob``; a batch is mixed at all with probability ``mix_prob``. The cutmix box has
    area 1 - lambda before clipping at the borders; lambda is then corrected to the box's actual
    area, so targets match the pixels exactly."""

    def __init__(self, *, num_classes: int, mixup_alpha: float, cutmix_alpha: float, switch_prob: float,
                 mix_prob: float, seed: int) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("BatchMixer needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.mix_prob = switch_prob, mix_prob
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        """Mix ``images`` (NCHW view, any memory format) and build targets from ``labels`` ([N] int64)."""
        kind = self._draw_kind()
        if kind == "none":
            return MixedBatch(images, soft_targets(labels, self.num_classes, 1.0), labels, 1.0, kind)
        if kind == "mixup":
            lam = self._beta(self.mixup_alpha)
            mixed = mixup(images, lam)
        else:
            box = self._box(images.shape[-2], images.shape[-1], self._beta(self.cutmix_alpha))
            lam = 1.0 - box.area() / (images.shape[-2] * images.shape[-1])
            mixed = cutmix(images, box)
        dominant = labels if lam >= 0.5 else labels.flip(0)
        return MixedBatch(mixed, soft_targets(labels, self.num_classes, lam), dominant, lam, kind)

    # --- host-side draws: a few scalars per batch from this mixer's generator -------------------

    def _uniform(self) -> float:
        return torch.rand((), generator=self.generator, dtype=torch.float64).item()

    def _draw_kind(self) -> str:
        if self.mix_prob < 1.0 and self._uniform() >= self.mix_prob:
            return "none"
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if self._uniform() < self.switch_prob else "mixup"
        return "cutmix" if self.cutmix_alpha > 0 else "mixup"

    def _beta(self, alpha: float) -> float:
        """One draw of Beta(alpha, alpha) as X / (X + Y) with X, Y ~ Gamma(alpha).

        ``torch._standard_gamma`` is the op ``torch.distributions.Gamma`` samples with; it is
        called directly because ``Gamma.sample`` accepts a generator only in recent torch.
        """
        concentration = torch.full((2,), alpha, dtype=torch.float64)
        x, y = torch._standard_gamma(concentration, generator=self.generator).tolist()
        tiny = torch.finfo(torch.float64).tiny  # both draws can underflow for alpha << 1
        x, y = max(x, tiny), max(y, tiny)
        return x / (x + y)

    def _box(self, height: int, width: int, lam: float) -> CutBox:
        """A box of about (1 - lam) x the image's area centred at a uniform pixel, clipped at the
        borders (torchvision's ``CutMix`` geometry)."""
        cy = int(torch.randint(height, (), generator=self.generator).item())
        cx = int(torch.randint(width, (), generator=self.generator).item())
        side = 0.5 * math.sqrt(1.0 - lam)  # half the box side, as a fraction of the image side
        half_h, half_w = int(side * height), int(side * width)
        return CutBox(y0=max(cy - half_h, 0), y1=min(cy + half_h, height),
                      x0=max(cx - half_w, 0), x1=min(cx + half_w, width))

    def state(self) -> torch.Tensor:
        """The generator's state, for a checkpoint."""
        return self.generator.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def mixer_seed(seed: int, rank: int) -> int:
    """Each rank draws its own lambdas and boxes (as timm, whose ranks are seeded apart), from a
    stream of its own: turning mixing on or off changes no other random draw of the run."""
    return seed * 2**20 + rank
