"""``python -m train``: train torchvision's GoogLeNet from the DALI loader (CPU or GPU, DDP)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from dali_pipelines import DatasetError, argtypes
from train.checkpoint import CheckpointError
from train.config import TrainConfig, default_device
from train.distributed import DistributedError


def get_args_parser() -> argparse.ArgumentParser:
    """The training parser; reusable (e.g. by a sweep script)."""
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train GoogLeNet (with auxiliary heads) from DALI pipelines. "
        "Under torchrun every rank reads its own shard.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True,
                      help="data root with train/ and val/ ImageFolder trees (or WebDataset shards)")
    data.add_argument("--format", choices=["auto", "folder", "wds"], default="auto",
                      help="data layout; auto detects shards vs folders (default: auto)")
    data.add_argument("--on-bad-file", choices=["error", "skip"], default="error",
                      help="a file that fails verification stops the run or is left out (default: error)")
    data.add_argument("--image-size", type=argtypes.int_in(32, 4096), default=224,
                      help="crop side fed to the model; eval resizes to size*256/224 first (default: 224)")
    data.add_argument("--batch-size", type=argtypes.int_in(1, 65536), default=64,
                      help="images per step per GPU/process (default: 64)")
    data.add_argument("--workers", type=argtypes.int_in(1, 1024), default=None,
                      help="DALI CPU threads per process (default: all cores up to 8, divided by ranks)")

    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=["gpu", "cpu"], default=default_device(),
                     help="gpu: nvJPEG + GPU model; cpu: the same graph on CPU threads "
                     f"(default here: {default_device()})")
    run.add_argument("--epochs", type=argtypes.positive_int, default=90, help="epochs (default: 90)")
    run.add_argument("--max-steps", type=argtypes.positive_int, default=None,
                     help="stop after this many optimizer steps in total; the schedule still "
                     "spans --epochs (default: no cap)")
    run.add_argument("--out", type=Path, default=Path("runs/googlenet"),
                     help="run directory for logs and checkpoints (default: runs/googlenet)")
    run.add_argument("--resume", type=Path, default=None,
                     help="checkpoint to continue from, e.g. RUN_DIR/checkpoints/last.pt (default: none)")
    run.add_argument("--save-every", type=argtypes.positive_int, default=500,
                     help="also checkpoint every N steps, besides each epoch end (default: 500)")
    run.add_argument("--seed", type=argtypes.seed, default=0, help="random seed (default: 0)")
    run.add_argument("--log-every", type=argtypes.positive_int, default=10,
                     help="steps between CSV/TensorBoard step records (default: 10)")

    opt = parser.add_argument_group("optimization")
    opt.add_argument("--lr", type=argtypes.non_negative_float, default=0.1,
                     help="learning rate per 256 images; scaled by global batch / 256 (default: 0.1)")
    opt.add_argument("--momentum", type=argtypes.fraction, default=0.9, help="SGD momentum (default: 0.9)")
    opt.add_argument("--weight-decay", type=argtypes.non_negative_float, default=1e-4,
                     help="weight decay (default: 1e-4)")
    opt.add_argument("--no-decay-norm-bias", action="store_true",
                     help="no weight decay on BatchNorm weights and biases (default: decay all)")
    opt.add_argument("--warmup-epochs", type=argtypes.non_negative_float, default=2.0,
                     help="linear warm-up length in epochs (default: 2)")
    opt.add_argument("--schedule", choices=["cosine", "step"], default="cosine",
                     help="after warm-up: cosine to 0, or x0.1 every --step-epochs (default: cosine)")
    opt.add_argument("--step-epochs", type=argtypes.positive_int, default=30,
                     help="epochs between x0.1 decays for --schedule step (default: 30)")
    opt.add_argument("--label-smoothing", type=argtypes.fraction, default=0.0,
                     help="cross-entropy label smoothing (default: 0)")
    opt.add_argument("--amp", choices=["bf16", "fp16", "off"], default="bf16",
                     help="mixed precision on the GPU; fp16 uses a gradient scaler; ignored on CPU "
                     "(default: bf16)")
    opt.add_argument("--compile", action="store_true", help="torch.compile the model (default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m train`` and the ``dali-train`` script; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.device == "gpu" and not torch.cuda.is_available():
        parser.error("--device gpu needs a CUDA GPU and torch sees none; use --device cpu")
    from train.runner import run  # heavy imports after the cheap checks

    try:
        return run(TrainConfig.from_args(args))
    except (DatasetError, CheckpointError, DistributedError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
