"""Checkpoints that resume exactly: written atomically, read with ``weights_only=True``.

Layout (a dict; every value loads under ``torch.load(..., weights_only=True)``):
``model`` (GoogLeNet state_dict, no ``module.``/``_orig_mod.`` prefixes, so it loads into
``torchvision.models.googlenet(num_classes=K, aux_logits=True)``), ``optimizer``,
``scheduler``, ``scaler``, ``epoch``, ``step`` (global optimizer steps done),
``epoch_step`` (steps done in ``epoch``), ``loader_state`` and ``rng`` (lists in rank order:
each rank's DALI pipeline checkpoint and torch CPU/CUDA generator states), ``config``,
``classes``, ``best_top1``, ``format_version``.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dali_pipelines import atomic_write

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "model", "optimizer", "scheduler", "epoch", "step", "epoch_step",
                 "loader_state", "rng", "config", "classes")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names it and says why."""


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The bare model's state_dict, unwrapped from DDP and torch.compile."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile's OptimizedModule
    return inner.state_dict()


def rng_state() -> dict[str, Any]:
    """Generator states that affect training (dropout in GoogLeNet's heads)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put generators back where a checkpoint left them."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one under ``path``, never a
    partial one: rename is atomic on POSIX file systems.
    """
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable across a power loss.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; truncated or foreign files raise CheckpointError, not a trace."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass RUN_DIR/checkpoints/last.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated, corrupt, or not a torch checkpoint): "
            f"{_first_line(err)}; use another file from its checkpoints/ folder"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a training "
                              "checkpoint written by python -m train")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} was not written by python -m train "
                              f"(missing {', '.join(missing)})")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {payload['format_version']}; "
                              f"this version reads format {FORMAT_VERSION}")
    return payload
