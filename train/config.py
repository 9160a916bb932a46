"""The resolved training configuration: what was asked plus what was derived, saved with the run."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REFERENCE_BATCH = 256  # the learning rate given on the command line is per 256 images


def default_device() -> str:
    """GPU when torch sees one, else the CPU fallback."""
    return "gpu" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; stored as JSON next to it and inside each checkpoint."""

    data: str
    format: str
    on_bad_file: str
    image_size: int
    batch_size: int
    workers: int | None
    device: str
    epochs: int
    max_steps: int | None
    out: str
    resume: str | None
    save_every: int
    seed: int
    log_every: int
    lr: float
    momentum: float
    weight_decay: float
    no_decay_norm_bias: bool
    warmup_epochs: float
    schedule: str
    step_epochs: int
    label_smoothing: float
    amp: str
    compile: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Copy the parsed arguments (paths as strings, so the config is JSON-ready)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        for name in ("data", "out", "resume"):
            if values[name] is not None:
                values[name] = str(values[name])
        return cls(**values)

    def scaled_lr(self, world_size: int) -> float:
        """Linear scaling rule (Goyal et al. 2017): lr x global batch / 256."""
        return self.lr * self.batch_size * world_size / REFERENCE_BATCH

    @property
    def resize_size(self) -> int:
        """Eval resize keeps ImageNet's 256/224 ratio for any --image-size."""
        return round(self.image_size * 256 / 224)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """Autocast dtype on the GPU; None for full precision (always on CPU)."""
        if self.device != "gpu" or self.amp == "off":
            return None
        return torch.bfloat16 if self.amp == "bf16" else torch.float16

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON and checkpoints (weights_only-loadable types only)."""
        return dataclasses.asdict(self)

    def save(self, path: Path, **derived: Any) -> None:
        """Write the config plus derived values (world size, scaled lr, ...) as JSON."""
        path.write_text(json.dumps({**self.to_dict(), **derived}, indent=2) + "\n", encoding="utf-8")
