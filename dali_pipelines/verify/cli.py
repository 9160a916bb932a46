"""The ``verify`` subcommand: check a data set, print a table of bad files, write a clean list."""

from __future__ import annotations

import argparse
from pathlib import Path

from dali_pipelines._util.argtypes import positive_int
from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import (
    ImageFolderData,
    read_file_list,
    scan_image_folder,
    write_file_list,
)
from dali_pipelines.verify import DEFAULT_MAX_PIXELS, VerifyReport, _relative, verify_data


def add_verify_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``verify`` and its options to the ``python -m dali_pipelines`` subcommands."""
    verify = commands.add_parser(
        "verify", help="check every image for what would stop DALI (exit 1 when any file is bad)",
        description="Header pass by default (empty, truncated, not an image, formats DALI cannot "
        "decode, absurd dimensions, unreadable); --deep also decodes every file with DALI's CPU decoder.")
    verify.add_argument("target", metavar="DIR_OR_FILELIST",
                        help="ImageFolder root (one sub-folder per class) or a DALI file list "
                        "('<path> <label>' per line)")
    verify.add_argument("--deep", action="store_true",
                        help="also decode every file with DALI's CPU decoder (default: header pass only)")
    verify.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images whose header claims more pixels, before decoding "
                        f"(default: {DEFAULT_MAX_PIXELS})")
    verify.add_argument("--workers", type=positive_int, default=default_num_threads(),
                        help=f"parallel reader/decoder threads (default: {default_num_threads()})")
    verify.add_argument("--clean-list", metavar="OUT", type=Path, default=None,
                        help="write a DALI file list of the good files here (default: none)")
    verify.add_argument("--root", type=Path, default=None,
                        help="for a file list: folder its paths are relative to (default: the list's folder)")
    verify.add_argument("--cache-dir", type=Path, default=None,
                        help="reuse results for files unchanged since a run with the same folder "
                        "(default: no cache)")


def run_verify(args: argparse.Namespace) -> int:
    """Verify, print the table and summary, write the clean list; 1 if any file is bad, else 0."""
    data = _load(args.target, args.root)
    report = verify_data(data, deep=args.deep, max_pixels=args.max_pixels, workers=args.workers,
                         cache_dir=args.cache_dir)
    if report.bad:
        print(format_table(report))
    level = "deep decode" if args.deep else "header pass"
    print(f"{len(data)} files checked ({level}) under {data.root}: "
          f"{len(data) - len(report.bad)} ok, {len(report.bad)} bad")
    if args.clean_list is not None:
        out = write_file_list(report.clean(), args.clean_list)
        print(f"clean file list ({len(data) - len(report.bad)} files) written to {out}; use it with "
              f"fn.readers.file(file_root='{data.root}', file_list='{out}')")
    elif report.bad:
        print("pass --clean-list OUT to write a file list without the bad files")
    return 1 if report.bad else 0


def _load(target: str, root: Path | None) -> ImageFolderData:
    path = Path(target)
    if path.is_dir():
        if root is not None:
            raise DatasetError(f"--root applies to file lists only; {path} is a folder, drop --root")
        return scan_image_folder(path)
    if path.is_file():
        return read_file_list(path, root=root)
    raise DatasetError(f"{target} does not exist; pass an ImageFolder root or a DALI file list")


def format_table(report: VerifyReport) -> str:
    """Bad files (relative to the data root) and reasons, one per line under a header."""
    root = report.data.root
    rows = [(_relative(path, root), reason) for path, reason in report.bad.items()]
    width = min(60, max(len("FILE"), *(len(name) for name, _ in rows)))
    lines = [f"{'FILE':<{width}}  REASON", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{name:<{width}}  {reason}" for name, reason in rows]
    return "\n".join(lines)

