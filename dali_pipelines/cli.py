"""Command line for the data set tools: ``make-sample`` and ``verify``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dali_pipelines._util.argtypes import positive_int, seed
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.sample import make_sample_dataset
from dali_pipelines.sources.to_shards import DEFAULT_IMAGES_PER_SHARD, convert_dataset
from dali_pipelines.verify.cli import add_verify_parser, run_verify
from dali_pipelines.verify.decode import DynamicModeMissingError


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m dali_pipelines`` parser, reusable by other tools."""
    parser = argparse.ArgumentParser(prog="python -m dali_pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser(
        "make-sample", help="write a sample ImageFolder data set (train/ and val/) of real photos")
    sample.add_argument("out", help="folder to create; must be new or empty")
    sample.add_argument("--images", type=positive_int, default=2000,
                        help="JPEGs in total over both splits (default: 2000)")
    sample.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")

    shards = commands.add_parser(
        "to-shards", help="convert an ImageFolder (or train/ + val/) to WebDataset tar shards with DALI "
        "indexes; rerun to resume")
    shards.add_argument("src", help="ImageFolder root, or a folder with train/ and val/ ImageFolders")
    shards.add_argument("out", help="output folder (new, empty, or an interrupted conversion to resume)")
    shards.add_argument("--images-per-shard", type=positive_int, default=DEFAULT_IMAGES_PER_SHARD,
                        help=f"images per .tar (default: {DEFAULT_IMAGES_PER_SHARD})")
    shards.add_argument("--seed", type=seed, default=0,
                        help="seed of the one global shuffle that mixes classes across shards (default: 0)")
    shards.add_argument("--deep", action="store_true",
                        help="verify by decoding every image, not only headers (default: off)")
    add_verify_parser(commands)
    return parser


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
        if args.command == "verify":
            return run_verify(args)
    except (DatasetError, ValueError, DynamicModeMissingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # one line naming the path, not a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; check the path and its permissions", file=sys.stderr)
        return 2
    return 2
