"""Command line: ``python -m bench [--quick] ...``, ``python -m bench report``, ``python -m bench soak``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.backends import BACKENDS
from bench.workloads import WORKLOADS
from dali_pipelines import DatasetError, argtypes

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCRATCH_DIR = RESULTS_DIR / "_scratch"  # git-ignored: quick runs never overwrite committed results
COMMANDS = ("run", "report", "soak")
CORES = os.cpu_count() or 1


def _names(name: str, accepted: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        bad = [item for item in items if item not in accepted]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{name} must be a comma-separated list of: {', '.join(accepted)}; got {text!r}")
        return items
    return parse


def _folder(name: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise argparse.ArgumentTypeError(
                f"{name} must be an existing ImageFolder directory (<root>/<class>/<image>.jpg, or with "
                f"train/ and val/); {text!r} is not a directory")
        return path
    return parse


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="train workload + one overlap setting, small repeats: under 2 minutes (default: off)")
    p.add_argument("--data", type=_folder("--data"), default=None,
                   help="ImageFolder root; its train/ is used when it has train/ and val/ "
                        "(default: a sample set made in a temp dir)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results folder (default: {RESULTS_DIR}, or {SCRATCH_DIR} with --quick)")
    p.add_argument("--backends", type=_names("--backends", list(BACKENDS)), default=tuple(BACKENDS),
                   help=f"comma list of {','.join(BACKENDS)} (default: all)")
    p.add_argument("--workloads", type=_names("--workloads", WORKLOADS), default=None,
                   help="comma list of seed,train,eval (default: all; train with --quick)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where batches are delivered; auto = cuda when available (default: auto)")
    p.add_argument("--batch-size", type=argtypes.int_in(1, 4096), default=None,
                   help="batch size of the main measurements (default: 64, 32 with --quick)")
    p.add_argument("--repeats", type=argtypes.int_in(3, 100), default=3,
                   help="timed repeats per measurement, at least 3 (default: 3)")
    p.add_argument("--max-workers", type=argtypes.int_in(1, 1024), default=CORES,
                   help=f"workers/threads of the main measurements; scaling goes 1..this (default: {CORES})")
    p.add_argument("--images", type=argtypes.int_in(64, 1_000_000), default=None,
                   help="size of the sample set made without --data (default: 2000, 320 with --quick)")
    _add_on_bad_file(p)
    p.add_argument("--timeout", type=argtypes.int_in(10, 86400), default=600,
                   help="seconds before one measurement is abandoned (default: 600)")


def _add_on_bad_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                   help="a file that fails verification stops the run, or is left out of every "
                        "backend (default: error)")


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m bench`` parser; ``run`` is the default sub-command."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    _add_run_args(commands.add_parser("run", help="measure every backend (the default command)"))
    report = commands.add_parser("report", help="print (and write) the Markdown tables of the newest run")
    report.add_argument("--out", type=_folder("--out"), default=RESULTS_DIR,
                        help=f"folder holding results JSON files (default: {RESULTS_DIR})")
    soak = commands.add_parser("soak", help="many epochs of the DALI train graph, memory per epoch")
    soak.add_argument("--data", type=_folder("--data"), default=None,
                      help="ImageFolder root (default: a 320-image sample set in a temp dir)")
    soak.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help=f"results folder (default: {RESULTS_DIR})")
    soak.add_argument("--epochs", type=argtypes.int_in(3, 100000), default=30, help="(default: 30)")
    soak.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                      help="auto = cpu, plus gpu when CUDA is available (default: auto)")
    soak.add_argument("--batch-size", type=argtypes.int_in(1, 4096), default=64, help="(default: 64)")
    soak.add_argument("--threads", type=argtypes.int_in(1, 1024), default=CORES,
                      help=f"DALI CPU threads (default: {CORES})")
    _add_on_bad_file(soak)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, with ``run`` inserted when no sub-command is given (``python -m bench --quick``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = get_args_parser().parse_args(argv)
    args.argv = given  # recorded with the results as the exact command
    return args


def _resolve_data(args: argparse.Namespace, tmp: Path, images: int) -> Path:
    from bench.data import image_folder_root, load_jpeg_folder, make_temp_sample

    root = image_folder_root(args.data) if args.data else make_temp_sample(images, tmp)
    load_jpeg_folder(root, on_bad_file=args.on_bad_file)  # fail here, naming the files, not in a worker
    return root


def _command(args: argparse.Namespace, tmp: Path) -> Any:
    if args.command == "report":
        from bench.commands import report_command
        return report_command(args.out)
    if args.command == "soak":
        from bench.commands import soak_command
        return soak_command(args, _resolve_data(args, tmp, 320))
    from bench.commands import run_command
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda needs a CUDA GPU and none is visible; use --device cpu or auto")
    images = args.images or (320 if args.quick else 2000)
    return run_command(args, _resolve_data(args, tmp, images), device)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench`` and ``dali-bench``; 0 on success, 2 on bad input."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dali-bench-") as tmp:
        try:
            _command(args, Path(tmp))
        except (DatasetError, ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0
