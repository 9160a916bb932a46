"""The ``make-sample`` and ``to-shards`` commands: their arguments and their work."""

from __future__ import annotations

import argparse
import os

from dali_pipelines._util.argtypes import int_in, positive_int, proper_fraction, seed
from dali_pipelines.sources.capped import DEFAULT_QUALITY
from dali_pipelines.sources.sample import make_sample_dataset
from dali_pipelines.sources.to_shards import DEFAULT_IMAGES_PER_SHARD, convert_dataset


def add_make_sample_command(commands: argparse._SubParsersAction) -> None:
    """Add ``make-sample`` to ``python -m dali_pipelines``'s commands."""
    about = "write a sample ImageFolder data set (train/ and val/) of real photos"
    sample = commands.add_parser(
        "make-sample", help=about, description=f"{about[0].upper()}{about[1:]}: JPEG crops of "
        "scikit-image's photographs, each class cut from its own photos.")
    sample.add_argument("out", help="folder to create; must be new or empty")
    sample.add_argument("--images", type=positive_int, default=2000,
                        help="JPEGs in total over both splits (default: 2000)")
    sample.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    sample.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                        help="processes encoding the JPEGs; the set is the same for any number "
                             f"(default: {os.cpu_count() or 1}, the cores here)")
    sample.set_defaults(run=run_make_sample)


def run_make_sample(args: argparse.Namespace) -> int:
    """Write the sample data set and say where."""
    out = make_sample_dataset(args.out, args.images, seed=args.seed, workers=args.workers)
    print(f"sample data set written to {out} (train/ and val/)")
    return 0


def add_to_shards_command(commands: argparse._SubParsersAction) -> None:
    """Add ``to-shards`` to ``python -m dali_pipelines``'s commands."""
    about = "convert an ImageFolder or label list (or train/ + val/) to WebDataset shards with DALI indexes"
    shards = commands.add_parser(
        "to-shards", help=f"{about}; rerun to resume",
        description=f"{about[0].upper()}{about[1:]}. Files that fail the verify checks are left out "
        "and listed. Rerunning the same command resumes an interrupted conversion.")
    shards.add_argument("src", help="ImageFolder root, a label list (.csv, .tsv or a DALI file list; "
                        "docs/data.md), or a split root whose only sub-folders are train/, val/ (and test/), "
                        "all labelled by train/'s classes")
    shards.add_argument("out", help="output folder: new, empty, or an interrupted conversion to resume "
                        "(for a split root: holding nothing but those split folders)")
    shards.add_argument("--images-per-shard", type=positive_int, default=DEFAULT_IMAGES_PER_SHARD,
                        help=f"images per .tar (default: {DEFAULT_IMAGES_PER_SHARD})")
    shards.add_argument("--seed", type=seed, default=0,
                        help="seed of the one global shuffle that mixes classes across shards (default: 0)")
    shards.add_argument("--val-split", metavar="FRACTION", type=proper_fraction, default=None,
                        help="hold out this fraction of each class (from --seed) and write OUT/train and "
                        "OUT/val with one class list (default: none)")
    shards.add_argument("--list-root", metavar="DIR", default=None,
                        help="for a label list: the folder its relative paths start from (default: the "
                        "list's folder)")
    shards.add_argument("--deep", action="store_true",
                        help="verify by decoding every image, not only headers (default: off)")
    shards.add_argument("--max-side", metavar="PX", type=positive_int, default=None,
                        help="re-encode images whose longer side exceeds PX to that size (aspect kept) as "
                        "JPEG: less to decode every epoch, see docs/shards.md (default: images kept as "
                        "they are)")
    shards.add_argument("--quality", metavar="Q", type=int_in(1, 100), default=None,
                        help=f"JPEG quality of the images --max-side re-encodes (default: {DEFAULT_QUALITY})")
    shards.set_defaults(run=run_to_shards)


def run_to_shards(args: argparse.Namespace) -> int:
    """Run ``to-shards`` and print one line per split written."""
    if args.quality is not None and args.max_side is None:
        raise ValueError("--quality sets how --max-side re-encodes images; add --max-side PX or drop "
                         "--quality")
    written = convert_dataset(args.src, args.out, images_per_shard=args.images_per_shard, seed=args.seed,
                              deep_verify=args.deep, max_side=args.max_side, quality=args.quality,
                              val_split=args.val_split, list_root=args.list_root)
    for split, shards in written.items():
        name = split or "data"
        print(f"{name:>6}: {len(shards):>9} images in {len(shards.shards):>6} shards -> {shards.root}")
    return 0
