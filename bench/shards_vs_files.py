"""Shards vs loose files: the same images, graph and settings, read from tar shards or one file each.

Usage::

    python -m bench.shards_vs_files --data DIR [--shards DIR] [--out bench/results]

``--data`` is an ImageFolder (or a split root: ``--split`` picks the folder, default train).
Without ``--shards`` the folder is converted first (into ``$TMPDIR/dali-bench-shards/``,
reused when already there). Workloads, each over full passes (epochs) after an untimed warm-up pass:

- ``read``: the reader stage alone (plus a byte checksum so every byte is touched): I/O path;
- ``eval`` and ``train``: the library's DALI graphs, decode included (see DESIGN.md).

The page cache is warm (the data set fits in RAM): the figure is the per-file cost (open,
stat, mmap, close per image) against sequential reads from a few tars, not network latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import DataNode
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from bench.machine import command_line, machine_info, now_iso, versions
from bench.report import rate_cell
from bench.runner import Measurement, measure_throughput
from dali_pipelines import (
    READER_NAME,
    DatasetError,
    DataSource,
    ImageFolderData,
    PipelineConfig,
    WebDatasetShards,
    argtypes,
    convert_image_folder,
    default_cache_dir,
    default_num_threads,
    make_loader,
    open_source,
    prepare_data,
    read_encoded,
)

_logger = logging.getLogger(__name__)

WORKLOADS = ("read", "eval", "train")
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@pipeline_def
def _read_graph(source: DataSource, cfg: PipelineConfig) -> tuple[DataNode, DataNode]:
    """The reader stage of every graph, plus a per-image byte sum so no read can be skipped."""
    jpegs, labels = read_encoded(source, cfg, train=False)
    return fn.reductions.sum(jpegs, dtype=types.FLOAT), labels


def _read_only(source: DataSource, cfg: PipelineConfig) -> DALIGenericIterator:
    """Batches of (byte checksums, labels): what the reader alone delivers, one epoch per pass."""
    pipe = _read_graph(source, cfg, batch_size=cfg.batch_size, num_threads=cfg.num_threads,
                       device_id=None, seed=cfg.seed, prefetch_queue_depth=cfg.prefetch_queue_depth)
    return DALIGenericIterator([pipe], ["images", "labels"], reader_name=READER_NAME,
                               last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)


class _PassIterable:
    """Re-iterable view of a DALI iterator as (images, labels) pairs, one epoch per ``iter``."""

    def __init__(self, iterator: DALIGenericIterator) -> None:
        self.iterator = iterator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for outputs in self.iterator:
            yield outputs[0]["images"], outputs[0]["labels"]


def make_batches(source: DataSource, cfg: PipelineConfig, workload: str) -> Callable[[], Batches]:
    """A factory of the iterable that ``measure_throughput`` times for one workload."""
    if workload == "read":
        return lambda: _PassIterable(_read_only(source, cfg))
    return lambda: make_loader(source, cfg, train=workload == "train")


def compare(files: DataSource, shards: DataSource, cfg: PipelineConfig, workloads: Sequence[str],
            repeats: int) -> list[dict[str, Any]]:
    """Measure every workload on loose files then shards; one row per (workload, format)."""
    rows = []
    for workload in workloads:
        for fmt, source in (("files", files), ("shards", shards)):
            factory = make_batches(source, cfg, workload)
            _logger.info("measuring %s on %s", workload, fmt)
            m: Measurement = measure_throughput(factory, warmup_batches=1, repeats=repeats,
                                                batches_per_repeat=None)
            rows.append({"workload": workload, "format": fmt, **m.to_dict()})
            print(f"{workload:>6} {fmt:>7}: {rate_cell(rows[-1])} img/s, "
                  f"{m.cpu_s_per_1000:.2f} CPU s/1000 img")
    return rows


def environment(argv: Sequence[str] | None) -> dict[str, Any]:
    """Machine and versions, so a figure is never separated from where it was measured."""
    command = command_line(None if argv is None else list(argv), "bench.shards_vs_files")
    return {"date": now_iso(), "command": command, "machine": machine_info(),
            "versions": {k: v for k, v in versions().items() if v}}


def _shards_for(files: ImageFolderData, shards_dir: Path | None, per_shard: int) -> WebDatasetShards:
    """``shards_dir`` opened, or ``files`` converted into a reusable folder under the temp dir.

    The folder name holds a hash of the resolved data root and the shard size, so two data
    sets that are both called ``sample/train`` never share (or resume) a conversion.
    """
    if shards_dir is not None:
        return open_source(shards_dir, "wds")
    root = files.root.resolve()
    key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "dali-bench-shards" / f"{root.name}-{key}-{per_shard}"
    return convert_image_folder(root, out, images_per_shard=per_shard)


def check_same_images(files: ImageFolderData, shards: WebDatasetShards) -> None:
    """Raise DatasetError unless ``shards`` hold exactly the (verified) loose files.

    The converter records each shard's source files (relative to the source root) in the
    shard's ``<stem>.json``; shards without those records are compared by count only, with
    a warning.
    """
    paths = [Path(tar).with_suffix(".json") for tar in shards.shards]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]
    if len(records) != len(paths) or not all(isinstance(r, dict) and "sources" in r for r in records):
        _logger.warning("%s: shards without a record of their source files; comparing image counts only",
                        shards.root)
        if len(shards) != len(files):
            raise DatasetError(f"--shards holds {len(shards)} images but --data {len(files)} readable ones; "
                               "pass shards converted from the same data")
        return
    in_shards = Counter(src for r in records for src in r["sources"])
    loose = Counter(os.path.relpath(f, files.root) for f in files.files)
    if in_shards != loose:
        missing, extra = loose - in_shards, in_shards - loose
        example = next(iter(missing or extra))
        raise DatasetError(
            f"--shards {shards.root} and --data {files.root} differ: {sum(missing.values())} loose files not "
            f"in the shards, {sum(extra.values())} shard images not among the loose files (e.g. {example}); "
            "pass shards converted from the same data, or drop --shards to convert it")


def _markdown(record: dict[str, Any]) -> str:
    """The record as a short Markdown report: context lines, then one table row per workload."""
    env, data, cfg = record["environment"], record["data"], record["config"]
    machine = env["machine"]
    lines = [
        "# Shards vs loose files (DALI, CPU graphs)", "",
        f"- date: {env['date']}", f"- command: `{env['command']}`",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, GPU: {machine['gpu']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- data: {data['images']} images ({data['files_mb']:.1f} MB) in {data['shards']} shards; "
        f"batch {cfg['batch_size']}, {cfg['num_threads']} threads, warm page cache",
        "",
        "| workload | files img/s (min-max) | shards img/s (min-max) | shards / files "
        "| CPU s per 1000 img, files / shards |",
        "|---|---|---|---|---|",
    ]
    for workload in dict.fromkeys(r["workload"] for r in record["results"]):
        f, s = (next(r for r in record["results"] if r["workload"] == workload and r["format"] == fmt)
                for fmt in ("files", "shards"))
        ratio = s["images_per_s"] / f["images_per_s"]
        lines.append(f"| {workload} | {rate_cell(f)} | {rate_cell(s)} | {ratio:.2f}x "
                     f"| {f['cpu_s_per_1000']:.2f} / {s['cpu_s_per_1000']:.2f} |")
    return "\n".join(lines) + "\n"


def get_args_parser() -> argparse.ArgumentParser:
    """Command line of ``python -m bench.shards_vs_files``."""
    parser = argparse.ArgumentParser(prog="python -m bench.shards_vs_files", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--data", required=True, help="ImageFolder, or a root with train/ and val/")
    add("--split", default=None, help="split folder under --data (default: train when present)")
    add("--shards", type=Path, default=None,
        help="shards of the same images (default: convert --data into $TMPDIR/dali-bench-shards/)")
    add("--out", type=Path, default=Path("bench/results"), help="(default: bench/results)")
    add("--workloads", default=",".join(WORKLOADS), help=f"(default: {','.join(WORKLOADS)})")
    add("--batch-size", type=argtypes.positive_int, default=64, help="(default: 64)")
    add("--threads", type=argtypes.positive_int, default=default_num_threads(),
        help="(default: all cores up to 8)")
    add("--repeats", type=argtypes.int_in(3, 1000), default=3,
        help="timed full passes per measurement, at least 3 for a median and spread (default: 3)")
    add("--images-per-shard", type=argtypes.positive_int, default=1000,
        help="when converting (default: 1000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Convert if needed, measure, write ``shards_vs_files.json`` and ``.md`` under ``--out``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or not set(workloads) <= set(WORKLOADS):
        print(f"--workloads: a comma list of {', '.join(WORKLOADS)}; got {args.workloads!r}", file=sys.stderr)
        return 2
    try:
        record = _run(args, workloads, argv)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (args.out / "shards_vs_files.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (args.out / "shards_vs_files.md").write_text(_markdown(record), encoding="utf-8")
    print(f"wrote {args.out / 'shards_vs_files.json'} and .md")
    return 0


def _run(args: argparse.Namespace, workloads: list[str], argv: Sequence[str] | None) -> dict[str, Any]:
    """Verify the loose files, get matching shards, measure both; the result record."""
    split = args.split or ("train" if (Path(args.data) / "train").is_dir() else None)
    files = cast(ImageFolderData, open_source(args.data, "folder", split=split))  # "folder": always one
    # Same verification (and cache) as the converter's: both sides then read the same images.
    files = prepare_data(files, on_bad_file="skip", cache_dir=default_cache_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    shards = _shards_for(files, args.shards, args.images_per_shard)
    check_same_images(files, shards)
    cfg = PipelineConfig(batch_size=args.batch_size, device="cpu", num_threads=args.threads)
    return {"environment": environment(argv), "config": cfg.to_dict(),
            "data": {"files_root": str(files.root), "images": len(files), "shards": len(shards.shards),
                     "files_mb": sum(os.path.getsize(f) for f in files.files) / 1e6},
            "results": compare(files, shards, cfg, workloads, args.repeats)}


if __name__ == "__main__":
    sys.exit(main())
