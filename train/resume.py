"""The resume rules: a resumed run takes its settings from its checkpoint, and goes on only where
the command, the data and the number of processes let it continue exactly; and the command that
resumes a stopped run."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from dali_pipelines.sources.identity import DataIdentity
from train.checkpoint import OPTIONAL_DATA, CheckpointError
from train.config import FREE, INVOCATION, MATCH, ConfigError, TrainConfig, flag_of, names_with_rule
from train.distributed import DistContext


class ResumeError(ValueError):
    """A checkpoint is fine, but this command cannot continue its run exactly; the message lists why."""


def run_dir_of(path: Path, saved_out: str) -> Path:
    """The run directory a checkpoint belongs to: the folder above its checkpoints/ folder."""
    return path.parent.parent if path.parent.name == "checkpoints" else Path(saved_out)


def resumed_config(payload: dict[str, Any], path: Path, given: dict[str, Any]) -> TrainConfig:
    """The saved run's settings, with the flags given beside --resume laid over them.

    Flags that must match the saved run are checked later by ``check_resumable`` (together with
    the world size), so every difference is reported in one message.
    """
    saved = dict(payload["config"])
    known = {spec.name for spec in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise CheckpointError(f"--resume {path}: written by a newer version of train (unknown settings: "
                              f"{', '.join(unknown)}); update this package")
    for name in names_with_rule(INVOCATION):
        saved.pop(name, None)
    saved["out"] = str(run_dir_of(path, saved.get("out", "")))
    try:
        return TrainConfig(**{**saved, **given})
    except ConfigError as err:
        raise CheckpointError(f"--resume {path}: its saved settings are invalid here ({err})") from None


def finished_message(payload: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why there is nothing left to train, or None when the run can go on."""
    where = f"run {cfg.out} is finished at step {payload['step']}"
    if payload["epoch"] >= cfg.epochs:
        return f"{where}: all {cfg.epochs} epochs done; nothing to resume"
    if cfg.max_steps is not None and payload["step"] >= cfg.max_steps:
        return f"{where} (--max-steps {cfg.max_steps}); pass a larger --max-steps to train on"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def check_resumable(payload: dict[str, Any], cfg: TrainConfig, path: Path, world_size: int) -> None:
    """Every setting that decides the sample order, schedule or numerics, and the number of
    processes, must equal the saved run's; all differences are listed in one ResumeError."""
    saved = _saved_settings(payload["config"])
    problems = [f"{flag_of(name)} {_shown(getattr(cfg, name))} (saved: {_shown(saved[name])})"
                for name in names_with_rule(MATCH) if name in saved and saved[name] != getattr(cfg, name)]
    fixes = []
    if problems:
        free = ", ".join(flag_of(n) for n in names_with_rule(FREE))
        fixes.append(f"leave those flags out (the checkpoint supplies them; only {free} may change)")
    saved_ranks = len(payload["ranks"])
    if saved_ranks != world_size:
        problems.append(f"{world_size} process(es) (saved: {saved_ranks})")
        fixes.append(f"launch {saved_ranks} process(es) (torchrun --nnodes x --nproc_per_node)")
    if problems:
        raise ResumeError(f"--resume {path} cannot continue its run exactly with: {'; '.join(problems)}. "
                          f"To continue it, {' and '.join(fixes)}; or start a new run with --overwrite.")


def _saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The saved settings, with the default of each setting the checkpoint lacks: its run trained
    without that feature (no --mixup, say), which a resume must not switch on."""
    defaults = {spec.name: spec.default for spec in dataclasses.fields(TrainConfig)
                if spec.default is not dataclasses.MISSING}
    return {**defaults, **saved}


def check_resumed_data(payload: dict[str, Any], cfg: TrainConfig, path: Path, *,
                       classes: tuple[str, ...] | None = None, train_files: int | None = None,
                       identity: DataIdentity | None = None) -> None:
    """The data must be the saved run's: same classes, the same usable files in the same order
    (its identity, where the checkpoint has one; else their number). It may have moved."""
    saved_data = payload["config"].get("data")
    saved_identity = payload.get(OPTIONAL_DATA)
    if identity is not None and saved_identity is not None:
        change = identity.differences(saved_identity)
        if change:
            raise ResumeError(f"--resume {path}: --data {cfg.data} is not the training data of the saved run "
                              f"({change}); a resume needs the same files in the same order: restore them "
                              f"(it used --data {saved_data}), or start a new run")
        return
    if classes is not None and list(classes) != list(payload["classes"]):
        raise ResumeError(f"--resume {path}: --data {cfg.data} has {len(classes)} classes "
                          f"({_few(classes)}), the saved run trained on {len(payload['classes'])} "
                          f"({_few(payload['classes'])}); pass its data (it used --data {saved_data})")
    if train_files is not None and train_files != payload["train_files"]:
        raise ResumeError(f"--resume {path}: --data {cfg.data} has {train_files} usable training images, "
                          f"the saved run had {payload['train_files']}; a resume needs the same files "
                          f"(it used --data {saved_data})")


def _few(names: Any) -> str:
    names = list(names)
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def resume_command(checkpoint: Path, ctx: DistContext) -> str:
    """The command that continues this run, ready to paste: the checkpoint brings the settings."""
    target = f"--resume {shlex.quote(str(checkpoint))}"
    if ctx.enabled:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        nodes = max(1, ctx.world_size // max(1, per_node))
        launcher = ("torchrun --standalone" if nodes == 1
                    else f"torchrun --nnodes {nodes} <this run's --node_rank and rendezvous options>")
        return f"{launcher} --nproc_per_node {per_node} -m train {target}"
    if Path(sys.argv[0]).name == "dali-train":
        return f"dali-train {target}"
    on_path = next((name for name in ("python", "python3") if shutil.which(name) == sys.executable), None)
    return f"{on_path or shlex.quote(sys.executable)} -m train {target}"
