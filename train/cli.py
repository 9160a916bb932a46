"""``python -m train``: train a torchvision classifier from the DALI loader (CPU or GPU, DDP); and
its sub-commands ``eval`` (a checkpoint on a data set, without training) and ``export`` (weights
and TorchScript or ONNX for inference)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch

from dali_pipelines import DatasetError
from dali_pipelines._util.pipes import quiet_broken_pipe
from train.checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from train.config import ConfigError, TrainConfig, get_args_parser
from train.distributed import DistributedError, OtherRankFailedError
from train.evaluate import EvalRequest, add_eval_command
from train.export import add_export_command
from train.resume import ResumeError, resumed_config
from train.rundir import RunDirError
from train.signals import StoppedAtOnceError, StoppedBeforeTrainingError

# Errors every rank meets alike (same settings, same files): rank 0 reports them for all.
SHARED_ERRORS = (ConfigError, CheckpointError, ResumeError, RunDirError, DatasetError, ValueError)


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun, or when malformed)."""
    text = os.environ.get("RANK", "0")
    return int(text) if text.isdigit() else 0


def configure_logging(rank: int) -> None:
    """The process-wide log set-up of a training process, in one place.

    Under torchrun every rank runs the same code, so a warning would print once per process:
    ranks other than 0 log errors only (rank 0 speaks for the run). Filters for what native
    libraries write to stderr belong here too.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if rank != 0:
        logging.getLogger().setLevel(logging.ERROR)


COMMANDS = ("eval", "export")  # python -m train COMMAND ...; anything else is a training run


def get_commands_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m train eval`` and ``python -m train export``; each command's ``run``
    default is the function that carries it out."""
    parser = argparse.ArgumentParser(prog="python -m train", description="Evaluate or export a checkpoint "
                                     "of python -m train (training itself: python -m train --help).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands (each has --help)")
    add_eval_command(commands)
    add_export_command(commands)
    return parser


def run_command(argv: Sequence[str]) -> int:
    """``python -m train eval ...`` / ``export ...``: one process, errors in one line."""
    args = get_commands_parser().parse_args(argv)
    try:
        return args.run(args)
    except SHARED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


@quiet_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m train`` and the ``dali-train`` script; returns the exit code."""
    rank = launch_rank()
    configure_logging(rank)
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return run_command(args)
    return _train(args, rank)


def _train(args: list[str], rank: int) -> int:
    """``python -m train [--flags]``: a training run (or --test-only's evaluation)."""
    parser = get_args_parser()
    given = vars(parser.parse_args(args))
    try:
        cfg = TrainConfig(**given)  # the flags on their own: one of --data and --resume is needed
    except ConfigError as err:
        parser.error(str(err))
    if cfg.test_only:
        return _test_only(cfg, given)
    try:
        cfg, payload = _resumed(cfg, given, parser)
        from train.runner import run  # heavy imports after the cheap checks

        return run(cfg, payload)
    except OtherRankFailedError:
        return 2  # rank 0 printed the reason
    except StoppedBeforeTrainingError as err:
        if rank == 0:
            print(str(err), file=sys.stderr)
        return 0
    except StoppedAtOnceError:  # a second Ctrl-C during training: the handler said what is kept
        return 130
    except KeyboardInterrupt:  # Ctrl-C before training: stop at once, without a traceback
        print(f"interrupted (rank {rank})", file=sys.stderr)
        return 130
    except DistributedError as err:
        print(f"error (rank {rank}): {err}", file=sys.stderr)
        return 2
    except SHARED_ERRORS as err:
        if rank == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2


def _resumed(cfg: TrainConfig, given: dict[str, Any],
             parser: argparse.ArgumentParser) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's settings and its checkpoint's payload (None for a new run), after the cheap
    checks: a --resume that cannot be read, a GPU run where torch sees none."""
    payload = None
    if cfg.resume is not None:
        path = checkpoint_path(Path(cfg.resume))
        payload = load_checkpoint(path)
        cfg = resumed_config(payload, path, {**given, "resume": str(path)})
    if cfg.device == "gpu" and not torch.cuda.is_available():
        if payload is not None:
            parser.error(f"--resume {cfg.resume}: its run trains on the GPU and torch sees no CUDA GPU "
                         "here; resume it on a machine with one")
        parser.error("--device gpu needs a CUDA GPU and torch sees none; use --device cpu")
    return cfg, payload


def _test_only(cfg: TrainConfig, given: dict[str, Any]) -> int:
    """``--test-only``, as torchvision's reference: evaluate --resume CKPT (or --weights FILE on
    --model), with the flags given here over the checkpoint's, then exit."""
    from train.evaluate import evaluate_checkpoint
    from train.trained import load_trained

    try:
        if cfg.device == "gpu" and not torch.cuda.is_available():
            raise ConfigError("--device gpu needs a CUDA GPU and torch sees none; use --device cpu")
        size = given.get("eval_size", given.get("image_size"))
        if cfg.resume is not None:
            trained = load_trained(Path(cfg.resume))
            request = EvalRequest(data=given.get("data", trained.data), device=cfg.device,
                                  batch_size=given.get("batch_size", trained.cfg.batch_size),
                                  workers=cfg.workers, eval_size=size, on_bad_file=_bad_file_rule(cfg),
                                  out=Path(given["out"]) if "out" in given else None)
            evaluate_checkpoint(trained, request)
            return 0
        return _test_weights(cfg, size, out=Path(given["out"]) if "out" in given else None)
    except SHARED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _test_weights(cfg: TrainConfig, size: int | None, *, out: Path | None) -> int:
    """--test-only --weights FILE: the file's weights in --model, classes from --data."""
    from dali_pipelines import open_source
    from dali_pipelines.sources import Format
    from train.evaluate import evaluate_weights
    from train.models import inference_model, inference_state_dict
    from train.weights import read_weights

    if cfg.data is None:
        raise ConfigError("--test-only --weights FILE needs --data DIR (its val split is evaluated)")
    assert cfg.weights is not None
    classes = tuple(open_source(cfg.data, fmt=cast("Format", cfg.format), split="val").classes)
    size = size or cfg.eval_crop
    weights = read_weights(Path(cfg.weights))
    model = inference_model(cfg.model, len(classes), image_size=size)
    try:
        model.load_state_dict(inference_state_dict(cfg.model, weights.state), strict=True)
    except RuntimeError as err:
        raise ConfigError(f"--weights {cfg.weights} does not fit --model {cfg.model} with {len(classes)} "
                          f"classes ({' '.join(str(err).split())[:300]})") from None
    request = EvalRequest(data=cfg.data, device=cfg.device, batch_size=cfg.batch_size, workers=cfg.workers,
                          on_bad_file=_bad_file_rule(cfg), out=out)
    evaluate_weights(model.eval(), cfg.model, classes, request, size)
    return 0


def _bad_file_rule(cfg: TrainConfig) -> Literal["error", "skip"]:
    """--on-bad-file, as the verifier's type (TrainConfig checked it is one of the two)."""
    return "skip" if cfg.on_bad_file == "skip" else "error"
