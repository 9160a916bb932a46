"""The declared work every backend does, and the settings one measurement runs under."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from dali_pipelines import IMAGENET_MEAN, IMAGENET_STD

WORKLOADS = ("seed", "train", "eval")
DEVICES = ("cpu", "cuda")  # where batches are delivered

CROP = 224  # output side of every workload
RESIZE_SHORTER = 256  # eval: shorter side before the center crop
SCALE = (0.08, 1.0)  # train: RandomResizedCrop area fraction
RATIO = (3 / 4, 4 / 3)  # train: RandomResizedCrop aspect ratio
MEAN = IMAGENET_MEAN  # train/eval normalize, [0, 1] scale
STD = IMAGENET_STD


@dataclass(frozen=True)
class RunSpec:
    """What one backend is asked to produce: batches of [N, 3, 224, 224] float32, int64 labels.

    ``workers`` is the backend's own parallelism knob (DataLoader processes, DALI threads,
    tf.data thread pool); ``device`` is where the batches must end up.
    """

    workload: str = "train"
    batch_size: int = 64
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    device: str = "cpu"
    seed: int = 0
    hw_decoder_load: float = 0.65  # dali-gpu only: share of images for the hardware decoder

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}; got {self.workload!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError(f"batch_size and workers must be >= 1; got {self.batch_size}, {self.workers}")
        if not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError(f"hw_decoder_load must be in [0, 1]; got {self.hw_decoder_load}")

    @property
    def train(self) -> bool:
        """Random augmentation and shuffled order (the train workload)."""
        return self.workload == "train"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)
