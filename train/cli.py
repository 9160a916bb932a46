"""``python -m train``: train torchvision's GoogLeNet from the DALI loader (CPU or GPU, DDP)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from dali_pipelines import DatasetError
from dali_pipelines._util.pipes import quiet_broken_pipe
from train.checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from train.config import ConfigError, TrainConfig, get_args_parser
from train.distributed import DistributedError, OtherRankFailedError
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


@quiet_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m train`` and the ``dali-train`` script; returns the exit code."""
    rank = launch_rank()
    configure_logging(rank)
    parser = get_args_parser()
    given = vars(parser.parse_args(argv))
    try:
        cfg = TrainConfig(**given)  # the flags on their own: one of --data and --resume is needed
    except ConfigError as err:
        parser.error(str(err))
    try:
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
