"""``python -m dali_pipelines``: make a sample data set, verify images, convert to WebDataset shards, tune a
loader."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dali_pipelines._util.argtypes import positive_int, seed
from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.sample import make_sample_dataset
from dali_pipelines.sources.to_shards import DEFAULT_IMAGES_PER_SHARD, convert_dataset
from dali_pipelines.tune.cli import add_tune_parser, run_tune
from dali_pipelines.verify import DEFAULT_MAX_PIXELS
from dali_pipelines.verify.cli import run_verify

_EXAMPLES = """examples:
  python -m dali_pipelines make-sample data/sample
  python -m dali_pipelines verify data/sample --clean-list clean.txt
  python -m dali_pipelines to-shards data/sample data/sample-wds
  python -m dali_pipelines tune data/sample --model googlenet --seconds 60"""


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m dali_pipelines`` parser, reusable by other tools."""
    parser = argparse.ArgumentParser(
        prog="python -m dali_pipelines", description="Data set tools for the DALI pipelines: make a "
        "sample data set, verify images before training, convert an ImageFolder to WebDataset shards, "
        "tune a loader's settings on this machine.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands (each has --help)")
    _add_make_sample(commands)
    _add_verify(commands)
    _add_to_shards(commands)
    add_tune_parser(commands)
    return parser


def _add_make_sample(commands: argparse._SubParsersAction) -> None:
    about = "write a sample ImageFolder data set (train/ and val/) of real photos"
    sample = commands.add_parser(
        "make-sample", help=about, description=f"{about[0].upper()}{about[1:]}: JPEG crops of "
        "scikit-image's photographs, each class cut from its own photos.")
    sample.add_argument("out", help="folder to create; must be new or empty")
    sample.add_argument("--images", type=positive_int, default=2000,
                        help="JPEGs in total over both splits (default: 2000)")
    sample.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")


def _add_verify(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser(
        "verify", help="check every image for what would stop DALI (exit 1 when any file is bad)",
        description="Check images before training: one bad file kills a DALI pipeline. The header pass "
        "(default) refuses empty, cut-short and unreadable files, content that is not an image or is "
        "in a format DALI does not decode, and headers claiming too many pixels; files whose header "
        "cannot show that DALI decodes them are decoded by DALI. Exit status: 0 all good, 1 a file "
        "is bad, 2 a usage error.")
    verify.add_argument("target", metavar="PATH",
                        help="an ImageFolder root (one sub-folder per class), a split root (train/, val/, "
                        "test/: each split is verified), a DALI file list ('<path> <label>' per line, "
                        "paths relative to the list's folder) or a single image")
    verify.add_argument("--deep", action="store_true",
                        help="decode every file with DALI's CPU decoder (default: header pass)")
    verify.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images whose header claims more pixels, before decoding "
                        f"(default: {DEFAULT_MAX_PIXELS})")
    verify.add_argument("--workers", type=positive_int, default=default_num_threads(),
                        help=f"parallel reader/decoder threads (default: {default_num_threads()})")
    verify.add_argument("--clean-list", metavar="OUT", type=Path, default=None,
                        help="write a DALI file list of the good files, paths relative to its folder; a "
                        "split root gets OUT-<split> per split (default: none)")
    verify.add_argument("--root", type=Path, default=None,
                        help="for a file list: the folder its paths are relative to, as DALI's file_root "
                        "(default: the list's folder)")
    verify.add_argument("--cache-dir", type=Path, default=None,
                        help="reuse results for files unchanged since a run over the same folder "
                        "(default: no cache)")


def _add_to_shards(commands: argparse._SubParsersAction) -> None:
    about = "convert an ImageFolder (or train/ + val/) to WebDataset tar shards with DALI indexes"
    shards = commands.add_parser(
        "to-shards", help=f"{about}; rerun to resume",
        description=f"{about[0].upper()}{about[1:]}. Files that fail the verify checks are left out "
        "and listed. Rerunning the same command resumes an interrupted conversion.")
    shards.add_argument("src", help="ImageFolder root, or a split root whose only sub-folders are train/, "
                        "val/ (and test/)")
    shards.add_argument("out", help="output folder: new, empty, or an interrupted conversion to resume "
                        "(for a split root: holding nothing but those split folders)")
    shards.add_argument("--images-per-shard", type=positive_int, default=DEFAULT_IMAGES_PER_SHARD,
                        help=f"images per .tar (default: {DEFAULT_IMAGES_PER_SHARD})")
    shards.add_argument("--seed", type=seed, default=0,
                        help="seed of the one global shuffle that mixes classes across shards (default: 0)")
    shards.add_argument("--deep", action="store_true",
                        help="verify by decoding every image, not only headers (default: off)")


def _to_shards(args: argparse.Namespace) -> int:
    """Run ``to-shards`` and print one line per split written."""
    written = convert_dataset(args.src, args.out, images_per_shard=args.images_per_shard, seed=args.seed,
                              deep_verify=args.deep)
    for split, shards in written.items():
        name = split or "data"
        print(f"{name:>6}: {len(shards):>9} images in {len(shards.shards):>6} shards -> {shards.root}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dali_pipelines`` and the ``dali-pipelines`` script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    try:
        if args.command == "make-sample":
            out = make_sample_dataset(args.out, args.images, seed=args.seed)
            print(f"sample data set written to {out} (train/ and val/)")
            return 0
        if args.command == "to-shards":
            return _to_shards(args)
        if args.command == "tune":
            return run_tune(args)
        return run_verify(args)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # one line naming the path, not a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; check the path and its permissions", file=sys.stderr)
        return 2
