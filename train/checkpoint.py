"""The checkpoint format: what a checkpoint file holds, how it is written and how it is read back.

Layout (format 3): a dict whose values all load under ``torch.load(..., weights_only=True)``.

- ``format_version``: 3.
- ``model``: GoogLeNet's state_dict without DDP's ``module.`` or torch.compile's ``_orig_mod.``
  prefixes, so it loads into ``torchvision.models.googlenet(num_classes=K, aux_logits=True)``.
- ``optimizer``, ``scheduler``, ``scaler``: their state_dicts.
- ``epoch``, ``step`` (optimizer steps done in total), ``epoch_step`` (steps done in ``epoch``),
  ``best_top1``.
- ``ema``: the weights' exponential moving average (--ema-decay), a state_dict with the same
  keys as ``model`` (loads into the same torchvision GoogLeNet); None when no EMA is kept.
- ``ranks``: one dict per rank, in rank order: ``loader`` (the DALI loader's position and RNG),
  ``rng`` (torch's CPU/CUDA generator states), ``epoch_sums`` (the partial epoch's loss,
  accuracy and timing sums; None at an epoch boundary), ``mix_rng`` (the state of the rank's
  mixup / cutmix generator; None when batches are not mixed).
- ``tuning``: the loader tuning of a --tune run (``TuneResult.to_record()``: the settings chosen,
  the defaults, every scoring, what it is valid for); a resume builds its loaders with its
  settings instead of tuning again. None without --tune.
- ``config``: every ``TrainConfig`` setting; a resume takes the run's settings from it.
- ``classes`` (names in label order), ``train_files`` (training images the loader read),
  ``run_id`` (also in the run's config.json: tells one run directory's records from another's).

Extending it: a new setting needs nothing here (a checkpoint without it resumes with the
setting's default, see ``train.resume``); a new top-level key that code reading this format would
misread needs ``FORMAT_VERSION + 1``. A key that only a new setting needs can instead be optional,
read with a default, as ``ema``, ``mix_rng`` and ``tuning`` are: a checkpoint without them resumes
with --ema-decay, --mixup/--cutmix and --tune at their defaults (off), for which None is right, and code
without a setting refuses a checkpoint that names it. Where the saved settings need such a key,
its absence is a layout error.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dali_pipelines._util.atomic import atomic_write
from train.model import bare_model, build_googlenet

FORMAT_VERSION = 3
# Top-level keys and their types; a file without them was not written by this format.
LAYOUT: dict[str, type | tuple[type, ...]] = {
    "format_version": int, "model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict,
    "epoch": int, "step": int, "epoch_step": int, "best_top1": float, "ranks": list, "config": dict,
    "classes": list, "train_files": int, "run_id": str,
}
RANK_LAYOUT: dict[str, type | tuple[type, ...]] = {"loader": (str, bytes), "rng": dict,
                                                   "epoch_sums": (dict, type(None))}
# Optional keys (a checkpoint whose settings lack their feature lacks them too): where, and which
# saved setting makes them required when it is on.
OPTIONAL_EMA = "ema"  # top level; --ema-decay
OPTIONAL_MIX_RNG = "mix_rng"  # per rank; --mixup / --cutmix
OPTIONAL_TUNING = "tuning"  # top level; --tune


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names it and says why in one sentence."""


# --- writing ------------------------------------------------------------------------------------


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The bare model's state_dict, unwrapped from DDP and torch.compile."""
    return bare_model(model).state_dict()


def rng_state(device: torch.device) -> dict[str, Any]:
    """Generator states that affect training (dropout in GoogLeNet's heads): the CPU's, and the
    GPU's of this rank's device when it trains on one (a CPU run never touches CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Put generators back where a checkpoint left them."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` durably: a crash at any point leaves the old file or the new one under
    ``path``, never a partial one (``atomic_write``)."""
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)


def estimated_bytes(num_classes: int, *, ema: bool = False) -> int:
    """About how large one checkpoint of a ``num_classes`` GoogLeNet is: weights, BatchNorm
    buffers, SGD's momentum buffer (one per weight), the EMA's weights and buffers when one is
    kept, plus 5 % and 1 MiB for the rest."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_googlenet(num_classes)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    copies = 2 if ema else 1
    return int(((1 + copies) * weights + copies * buffers) * 1.05) + 2**20


# --- reading ------------------------------------------------------------------------------------


def checkpoint_path(path: Path) -> Path:
    """``--resume`` accepts a checkpoint file or a run directory (meaning its last.pt)."""
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint and check its layout; any unusable file raises CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"--resume {path}: no such file; pass RUN_DIR/checkpoints/last.pt or RUN_DIR")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise CheckpointError(f"--resume {path}: cannot be read ({err.strerror})") from None
    if path.stat().st_size == 0:
        raise CheckpointError(f"--resume {path}: the file is empty (an interrupted copy?); "
                              "use another checkpoint from its run's checkpoints/ folder")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"--resume {path}: not a checkpoint written by python -m train "
                              "(not a complete torch archive: truncated, or another kind of file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on damaged archives in many ways (KeyError, ...)
        raise CheckpointError(_unreadable(path, err)) from None
    _check_layout(payload, path)
    return payload


def _unreadable(path: Path, err: Exception) -> str:
    """One sentence for a torch.load failure (torch's own messages run to several paragraphs)."""
    text = " ".join(str(err).split())
    foreign = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if isinstance(err, pickle.UnpicklingError) and foreign:
        return (f"--resume {path}: holds Python objects ({foreign.group(1)}) that weights_only loading "
                "refuses, so python -m train did not write it")
    detail = re.search(r"WeightsUnpickler error: (.+?)(?: Check the documentation|$)", text)
    reason = detail.group(1) if detail else (text or type(err).__name__)
    reason = re.split(r"(?<=[.;])\s", reason, maxsplit=1)[0].rstrip(".;: ")
    return f"--resume {path}: damaged, torch cannot read it ({reason})"


def _check_layout(payload: Any, path: Path) -> None:
    foreign = f"--resume {path}: not a checkpoint written by python -m train"
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{foreign} (it holds {_describe(payload)})")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        fix = "update this package" if newer else "resume it with the version that wrote it"
        raise CheckpointError(f"--resume {path}: checkpoint format {version} is "
                              f"{'newer' if newer else 'older'} than this version's {FORMAT_VERSION}; {fix}")
    wrong = [key for key, kind in LAYOUT.items() if not isinstance(payload.get(key), kind)]
    ranks = payload["ranks"] if isinstance(payload.get("ranks"), list) else []
    if not ranks or not all(_has_layout(r, RANK_LAYOUT) for r in ranks):
        wrong.append("ranks")
    wrong += _optional_keys_wrong(payload, ranks)
    if wrong:
        raise CheckpointError(f"{foreign} (missing or malformed: {', '.join(dict.fromkeys(wrong))})")


def _optional_keys_wrong(payload: dict[str, Any], ranks: list[Any]) -> list[str]:
    """The optional keys that are malformed, or missing although the saved settings need them."""
    config = payload["config"] if isinstance(payload.get("config"), dict) else {}
    wrong = []
    ema = payload.get(OPTIONAL_EMA)
    if not isinstance(ema, dict | type(None)) or (config.get("ema_decay", 0) and ema is None):
        wrong.append(OPTIONAL_EMA)
    tuning = payload.get(OPTIONAL_TUNING)
    if not isinstance(tuning, dict | type(None)) or (config.get("tune") and tuning is None):
        wrong.append(OPTIONAL_TUNING)
    mixing = bool(config.get("mixup", 0) or config.get("cutmix", 0))
    for rank in ranks:
        state = rank.get(OPTIONAL_MIX_RNG) if isinstance(rank, dict) else None
        if not isinstance(state, torch.Tensor | type(None)) or (mixing and state is None):
            wrong.append(f"ranks' {OPTIONAL_MIX_RNG}")
    return wrong


def _has_layout(value: Any, layout: dict[str, type | tuple[type, ...]]) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(k), kind) for k, kind in layout.items())


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(map(str, list(value)[:3]))
        return f"a dict of {len(value)} entries: {keys}{', ...' if len(value) > 3 else ''}"
    return f"a {type(value).__name__}"
