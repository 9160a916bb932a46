"""A trained model read back from a checkpoint, for evaluation and export: which architecture,
which classes, which weights (the EMA's when the run kept one), at which input size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from train.checkpoint import OPTIONAL_EMA, CheckpointError, load_checkpoint
from train.config import INVOCATION, ConfigError, TrainConfig, names_with_rule
from train.models import inference_model, inference_state_dict


def checkpoint_file(path: Path) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/best.pt (last.pt without one)."""
    if not path.is_dir():
        return path
    best = path / "checkpoints" / "best.pt"
    return best if best.exists() else path / "checkpoints" / "last.pt"


@dataclass(frozen=True)
class TrainedModel:
    """What a checkpoint's run trained, ready to build for inference."""

    path: Path
    cfg: TrainConfig  # the run's settings
    classes: tuple[str, ...]
    state: dict[str, torch.Tensor]  # the training state_dict of the chosen weights
    weights: str  # "ema" or "raw"
    step: int
    epoch: int
    run_id: str

    @property
    def name(self) -> str:
        return self.cfg.model

    @property
    def data(self) -> str:
        """The run's --data (every saved run has one)."""
        assert self.cfg.data is not None
        return self.cfg.data

    def module(self, image_size: int | None = None) -> nn.Module:
        """The inference model (GoogLeNet without its auxiliary heads) with these weights loaded
        strictly, in eval mode, on the CPU."""
        size = self.cfg.eval_crop if image_size is None else image_size
        model = inference_model(self.name, len(self.classes), image_size=size)
        model.load_state_dict(inference_state_dict(self.name, self.state), strict=True)
        return model.eval()


def load_trained(path: Path, *, raw: bool = False) -> TrainedModel:
    """The checkpoint at ``path`` (see ``checkpoint_file``): its EMA weights when it has them and
    ``raw`` is False, else its weights. Errors name the file."""
    path = checkpoint_file(path)
    try:
        payload = load_checkpoint(path)
    except CheckpointError as err:  # its messages speak of --resume; here the file is the argument
        raise CheckpointError(str(err).replace(f"--resume {path}", f"checkpoint {path}", 1)) from None
    cfg = _saved_config(payload, path)
    use_ema = not raw and isinstance(payload.get(OPTIONAL_EMA), dict)
    return TrainedModel(path=path, cfg=cfg, classes=tuple(payload["classes"]),
                        state=payload[OPTIONAL_EMA] if use_ema else payload["model"],
                        weights="ema" if use_ema else "raw", step=payload["step"], epoch=payload["epoch"],
                        run_id=payload["run_id"])


def _saved_config(payload: dict[str, Any], path: Path) -> TrainConfig:
    """The run's settings (a checkpoint without a newer setting ran with its default)."""
    saved = {key: value for key, value in payload["config"].items() if key not in names_with_rule(INVOCATION)}
    try:
        return TrainConfig(**saved)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: its settings are not this version's ({err}); "
                              "use the version that wrote it") from None
