"""The ``verify`` command's work: verify each data set a path names, print what is bad, write clean lists."""

from __future__ import annotations

import argparse

from dali_pipelines.sources.image_folder import image_sets, write_file_list
from dali_pipelines.verify import verify_data


def run_verify(args: argparse.Namespace) -> int:
    """Verify, print the bad files and a summary per data set, write clean lists; 1 if any file is bad."""
    status = 0
    for split, data in image_sets(args.target, root=args.root).items():
        report = verify_data(data, deep=args.deep, max_pixels=args.max_pixels, workers=args.workers,
                             cache_dir=args.cache_dir)
        for name, reason in report.named_bad():
            print(f"{name}: {reason}")
        level = "deep decode" if args.deep else "header pass"
        print(f"{split + ': ' if split else ''}{len(data)} files checked ({level}) under {data.root}: "
              f"{len(data) - len(report.bad)} ok, {len(report.bad)} bad")
        if args.clean_list is not None:
            out = args.clean_list  # a split root gets OUT-<split> (before the suffix) per split
            out = write_file_list(report.clean(), out.with_stem(f"{out.stem}-{split}") if split else out)
            print(f"clean file list ({len(data) - len(report.bad)} files) written to {out}; "
                  f"read it with fn.readers.file(file_list='{out}')")
        elif report.bad:
            print("pass --clean-list OUT to write a file list without the bad files")
        status |= bool(report.bad)
    return status
