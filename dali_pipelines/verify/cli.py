"""The ``verify`` command: its arguments, and its work: verify each data set a path names, print
what is bad, write clean lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from dali_pipelines._util.argtypes import positive_int
from dali_pipelines.config import default_cache_dir, default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources import is_shard_dir, open_shards, split_folders
from dali_pipelines.sources.image_folder import ImageFolderData, NoClassFoldersError, write_file_list
from dali_pipelines.sources.opening import labelled_sets
from dali_pipelines.sources.s3 import bucket_image_sets, is_s3_url
from dali_pipelines.verify import DEFAULT_MAX_PIXELS, verify_data, verify_shards


def add_verify_command(commands: argparse._SubParsersAction) -> None:
    """Add ``verify`` to ``python -m dali_pipelines``'s commands."""
    verify = commands.add_parser(
        "verify", help="check every image for what would stop DALI (exit 1 when any file is bad)",
        description="Check images before training: one bad file kills a DALI pipeline. The header pass "
        "(default) refuses empty, cut-short and unreadable files, content that is not an image or is "
        "in a format DALI does not decode, and headers claiming too many pixels; files whose header "
        "cannot show that DALI decodes them are decoded by DALI. Exit status: 0 all good, 1 a file "
        "is bad, 2 a usage error.")
    verify.add_argument("target", metavar="PATH",
                        help="an ImageFolder root (one sub-folder per class), a split root (train/, val/, "
                        "test/: each split is verified), a label list (.csv or .tsv, or a DALI file list: "
                        "'<path> <label>' per line; paths relative to the list's folder), a single image, "
                        "a folder of WebDataset shards (each checked against its recorded sha256, or "
                        "member by member; --deep decodes every member) or a split root of them, or "
                        "s3://bucket/prefix (an ImageFolder tree in a bucket)")
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
    verify.add_argument("--list-root", "--root", dest="root", metavar="DIR", type=Path, default=None,
                        help="for a file list: the folder its paths are relative to, as DALI's file_root "
                        "(default: the list's folder)")
    cache = verify.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", type=Path, default=None,
                       help="where results are kept, so a file unchanged since a run over the same folder is "
                       "not read again; training and the benchmarks read the same cache (default: "
                       "$DALI_PIPELINES_CACHE, else $XDG_CACHE_HOME/dali_pipelines, else "
                       "~/.cache/dali_pipelines)")
    cache.add_argument("--no-cache", action="store_true",
                       help="read every file, and keep no result (default: off)")
    verify.set_defaults(run=run_verify)


def _data_sets(args: argparse.Namespace) -> dict[str, ImageFolderData]:
    """What the target names: local files (``labelled_sets``), or ImageFolder trees in a bucket."""
    if not is_s3_url(args.target):
        try:
            return labelled_sets(args.target, list_root=args.root, single_image=True)
        except NoClassFoldersError as err:
            raise err.with_hint("verify takes a folder of class folders, a split root, a label list or one "
                                "image") from None
    if args.root is not None:
        raise DatasetError(f"a root (--root) applies to file lists only; {args.target} is a bucket, drop it")
    return dict(bucket_image_sets(args.target))


def run_verify(args: argparse.Namespace) -> int:
    """Verify, print the bad files and a summary per data set, write clean lists; 1 if any file is bad."""
    cache_dir = None if args.no_cache else args.cache_dir or default_cache_dir()
    shard_sets = _shard_sets(Path(args.target))
    if shard_sets:
        return _run_verify_shards(args, shard_sets, cache_dir)
    status = 0
    for split, data in _data_sets(args).items():
        report = verify_data(data, deep=args.deep, max_pixels=args.max_pixels, workers=args.workers,
                             cache_dir=cache_dir)
        for name, reason in report.named_bad():
            print(f"{name}: {reason}")
        level = "deep decode" if args.deep else "header pass"
        print(f"{split + ': ' if split else ''}{len(data)} files checked ({level}) under {data.root}: "
              f"{len(data) - len(report.bad)} ok, {len(report.bad)} bad"
              + (f" ({report.cached} results from the cache in {cache_dir})" if report.cached else ""))
        if args.clean_list is not None:
            out = args.clean_list  # a split root gets OUT-<split> (before the suffix) per split
            root = str(data.root) if is_s3_url(data.root) else None  # DALI's file_root for a bucket
            out = write_file_list(report.clean(), out.with_stem(f"{out.stem}-{split}") if split else out,
                                  file_root=root)
            extra = f", file_root='{root}'" if root else ""
            print(f"clean file list ({len(data) - len(report.bad)} files) written to {out}; "
                  f"read it with fn.readers.file(file_list='{out}'{extra})")
        elif report.bad:
            print("pass --clean-list OUT to write a file list without the bad files")
        status |= bool(report.bad)
    return status


def _shard_sets(path: Path) -> dict[str, Path]:
    """The shard folders ``path`` names by split ("" for one), or {} when it names no shards."""
    if not path.is_dir():
        return {}
    if is_shard_dir(path):
        return {"": path}
    splits = split_folders(path)
    return splits if splits and all(is_shard_dir(folder) for folder in splits.values()) else {}


def _run_verify_shards(args: argparse.Namespace, shard_sets: dict[str, Path], cache_dir: Path | None) -> int:
    """Check each shard folder, print the bad shards (naming the sample where known) and a summary."""
    if args.clean_list is not None or args.root is not None:
        raise DatasetError(f"{args.target} holds WebDataset shards; --clean-list and --root apply to image "
                           "folders and file lists only: drop them")
    status = 0
    for split, folder in shard_sets.items():
        report = verify_shards(open_shards(folder), deep=args.deep, max_pixels=args.max_pixels,
                               workers=args.workers, cache_dir=cache_dir)
        for tar, reason in report.bad.items():
            print(f"{tar}: {reason}")
        level = "deep decode" if args.deep else "checksums, or member headers"
        total = len(report.shards.shards)
        print(f"{split + ': ' if split else ''}{total} shards checked ({level}) under {report.shards.root}: "
              f"{total - len(report.bad)} ok, {len(report.bad)} bad")
        status |= bool(report.bad)
    return status
