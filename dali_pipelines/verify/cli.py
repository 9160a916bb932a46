"""The ``verify`` command's work: verify each data set a path names, print what is bad, write clean lists."""

from __future__ import annotations

import argparse

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData, image_sets, write_file_list
from dali_pipelines.sources.s3 import bucket_image_sets, is_s3_url
from dali_pipelines.verify import verify_data


def _data_sets(args: argparse.Namespace) -> dict[str, ImageFolderData]:
    """What the target names: local files (``image_sets``), or ImageFolder trees in a bucket."""
    if not is_s3_url(args.target):
        return image_sets(args.target, root=args.root)
    if args.root is not None:
        raise DatasetError(f"a root (--root) applies to file lists only; {args.target} is a bucket, drop it")
    return dict(bucket_image_sets(args.target))


def run_verify(args: argparse.Namespace) -> int:
    """Verify, print the bad files and a summary per data set, write clean lists; 1 if any file is bad."""
    status = 0
    for split, data in _data_sets(args).items():
        report = verify_data(data, deep=args.deep, max_pixels=args.max_pixels, workers=args.workers,
                             cache_dir=args.cache_dir)
        for name, reason in report.named_bad():
            print(f"{name}: {reason}")
        level = "deep decode" if args.deep else "header pass"
        print(f"{split + ': ' if split else ''}{len(data)} files checked ({level}) under {data.root}: "
              f"{len(data) - len(report.bad)} ok, {len(report.bad)} bad")
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
