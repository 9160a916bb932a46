"""The checkpoint format: what a checkpoint file holds, how it is written and how it is read back.

Layout (format 3): a dict whose values all load under ``torch.load(..., weights_only=True)``.

- ``format_version``: 3.
- ``model``: the model's state_dict without DDP's ``module.`` or torch.compile's ``_orig_mod.``
  prefixes, so it loads into torchvision's builder of ``config["model"]`` (GoogLeNet, the default
  and the model of checkpoints without that setting:
  ``torchvision.models.googlenet(num_classes=K, aux_logits=True)``).
- ``optimizer``, ``scheduler``, ``scaler``: their state_dicts.
- ``epoch``, ``step`` (optimizer steps done in total), ``epoch_step`` (steps done in ``epoch``),
  ``best_top1``.
- ``ema``: the weights' exponential moving average (--ema-decay), a state_dict with the same
  keys as ``model`` (loads into the same torchvision model); None when no EMA is kept.
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
- ``data_identity``: which training samples the run read, in order
  (``dali_pipelines.sources.identity``: kind, digest, count, compressed entries); a resume
  refuses other data of the same size, naming what changed. Optional: a checkpoint without it
  resumes with the count check alone.

Files: a run keeps ``checkpoints/last.pt`` (the newest save), ``previous.pt`` (the save last.pt
replaced) and ``best.pt`` (the best whole epoch's); each is verified member by member against the
CRC-32 values torch's zip writer records before it is resumed from.

Extending it: a new setting needs nothing here (a checkpoint without it resumes with the
setting's default, see ``train.resume``); a new top-level key that code reading this format would
misread needs ``FORMAT_VERSION + 1``. A key that only a new setting needs can instead be optional,
read with a default, as ``ema``, ``mix_rng`` and ``tuning`` are: a checkpoint without them resumes
with --ema-decay, --mixup/--cutmix and --tune at their defaults (off), for which None is right, and code
without a setting refuses a checkpoint that names it. Where the saved settings need such a key,
its absence is a layout error.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dali_pipelines._util.atomic import atomic_write
from train.model import bare_model

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
OPTIONAL_DATA = "data_identity"  # top level; any run (absent from checkpoints written before it)
DATA_LAYOUT: dict[str, type | tuple[type, ...]] = {"kind": str, "digest": str, "count": int, "entries": bytes}
# The files of a run's checkpoints/ folder: the newest periodic or epoch-end save, the one it
# replaced (kept so a damaged last.pt always has a predecessor), and the best epoch's.
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"
CHECKPOINT_NAMES = (LAST, PREVIOUS, BEST)
ZIP_MAGIC = b"PK\x03\x04"  # how every torch archive (and any zip file) begins


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


def temporary_of(path: Path) -> Path:
    """The temporary a save of ``path`` writes first (``atomic_write``'s name for it); a kill -9
    during a save leaves it behind, and a run claiming the folder removes it (``train.rundir``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_atomic(payload: dict[str, Any], path: Path, *, previous: Path | None = None) -> None:
    """``torch.save`` durably: a crash at any point leaves the old file or the new one under
    ``path``, never a partial one (``atomic_write``). With ``previous``, the file ``path`` held
    becomes ``previous`` just before the new one takes its place, so the save before the newest is
    always kept too. A save that fails removes its temporaries: only a kill leaves one behind."""
    temp = temporary_of(path)
    try:
        with atomic_write(path, "wb", temp=temp) as handle:
            torch.save(payload, handle)
            if previous is not None and path.exists():
                _keep_as(path, previous)
    except BaseException:
        temp.unlink(missing_ok=True)
        if previous is not None:
            temporary_of(previous).unlink(missing_ok=True)
        raise


def _keep_as(path: Path, previous: Path) -> None:
    """Put ``path``'s current file under ``previous`` (replacing it) while ``path`` keeps it too:
    a hard link, so no second copy is written; a copy where the file system has no links."""
    link = temporary_of(previous)
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:
        shutil.copyfile(path, link)
    os.replace(link, previous)


def estimated_bytes(model: nn.Module, *, ema: bool = False, optimizer_copies: int = 1) -> int:
    """About how large one checkpoint of ``model`` is: weights, buffers, the optimizer's state
    (``optimizer_copies`` tensors per weight: 1 for SGD's momentum, 2 for Adam's moments), the EMA's
    weights and buffers when one is kept, plus 5 % and 1 MiB for the rest."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    copies = 2 if ema else 1
    return int(((copies + optimizer_copies) * weights + copies * buffers) * 1.05) + 2**20


# --- reading ------------------------------------------------------------------------------------


def checkpoint_path(path: Path) -> Path:
    """``--resume`` accepts a checkpoint file or a run directory (meaning its last.pt); a run
    directory without a last.pt is refused, naming the checkpoints it has or what to do instead."""
    if not path.is_dir():
        return path
    last = path / "checkpoints" / LAST
    if last.exists():
        return last
    others = [p for p in (path / "checkpoints" / PREVIOUS, path / "checkpoints" / BEST) if p.is_file()]
    if others:
        raise CheckpointError(f"--resume {path}: this run directory has no checkpoints/{LAST}; resume "
                              f"from {' or '.join(f'--resume {p}' for p in others)}")
    if (path / "config.json").is_file():
        raise CheckpointError(f"--resume {path}: this run saved no checkpoint (it stopped before its "
                              "first save), so there is nothing to resume; start it again with the same "
                              f"--data and settings (in {path / 'config.json'}) and --out {path} --overwrite")
    raise CheckpointError(f"--resume {path}: not a run directory (no checkpoints/{LAST}, no config.json); "
                          "pass the --out of a run, or a checkpoint file")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint, verify every member against its CRC-32, and check its layout; any
    unusable file raises CheckpointError, naming the run's other checkpoints when it is damaged."""
    if not path.exists():
        raise CheckpointError(f"--resume {path}: no such file; pass a checkpoint file "
                              "(RUN_DIR/checkpoints/last.pt) or a run directory")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(ZIP_MAGIC))
    except OSError as err:
        raise CheckpointError(f"--resume {path}: cannot be read ({err.strerror})") from None
    damage = _damage(path, head)
    if damage is not None:
        raise CheckpointError(f"--resume {path}: {damage}; {fallback_hint(path)}")
    if head != ZIP_MAGIC or not zipfile.is_zipfile(path):
        raise CheckpointError(f"--resume {path}: not a checkpoint written by python -m train "
                              "(not a torch archive, another kind of file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on foreign archives in many ways (KeyError, ...)
        raise CheckpointError(f"{_unreadable(path, err)}; {fallback_hint(path)}") from None
    _check_layout(payload, path)
    return payload


def _damage(path: Path, head: bytes) -> str | None:
    """What is wrong with a file that is (or began as) a torch archive, or None when it is whole.

    Every member is read and checked against the CRC-32 that torch's writer recorded for it: the
    zip structure alone (what torch.load reads) survives damage inside a tensor's bytes, which
    would load as wrong weights without a word. Costs one read of the file.
    """
    if path.stat().st_size == 0:
        return "the file is empty (an interrupted copy?)"
    if head != ZIP_MAGIC:
        return None  # not an archive at all: the caller names it foreign
    if not zipfile.is_zipfile(path):
        return "truncated: a torch archive whose end is missing (an interrupted copy or a full disk?)"
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                try:
                    with archive.open(info) as member:
                        while member.read(2**20):
                            pass
                except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                    return (f"damaged: {info.filename} is not what torch's writer recorded ({err}; changed "
                            "on disk or in a copy)")
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        return f"damaged: its zip directory cannot be read ({err})"
    return None


def fallback_hint(path: Path) -> str:
    """Where to resume instead of a damaged ``path``: the intact checkpoints beside it (previous.pt,
    best.pt, last.pt), each with its step, or what to do when there is none."""
    usable = []
    for name in CHECKPOINT_NAMES:
        other = path.parent / name
        step = None if other.name == path.name else _intact_step(other)
        if step is not None:
            usable.append(f"--resume {other} (step {step})")
    if usable:
        return f"use {' or '.join(usable)}"
    if path.parent.name == "checkpoints":
        return "no other checkpoint of its run is intact: start the run again with --overwrite"
    return "pass another checkpoint of its run"


def _intact_step(path: Path) -> int | None:
    """The step of the checkpoint at ``path`` if it is there and passes the CRC check, else None
    (a memory-mapped load: its tensors are not read again)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(ZIP_MAGIC))
        if head != ZIP_MAGIC or _damage(path, head) is not None:
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, unreadable or foreign: simply not offered
        return None
    step = payload.get("step") if isinstance(payload, dict) else None
    return step if isinstance(step, int) else None


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
    return (f"--resume {path}: torch cannot read it ({reason}) although every member passes its CRC-32 "
            "check, so python -m train did not write it")


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
    data = payload.get(OPTIONAL_DATA)
    if data is not None and not _has_layout(data, DATA_LAYOUT):
        wrong.append(OPTIONAL_DATA)
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
