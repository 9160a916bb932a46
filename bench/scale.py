"""The scale section: what start-up costs as a data set grows, on synthetic ImageFolder trees.

A tree of N files in up to 1,000 classes is made of hard links to the run's own JPEGs (a few
hundred real photos, so the header pass reads real content and the page cache holds it all),
then each phase runs in a fresh process (``bench.scale_phase``): the scan, a cold and a warm
verification, and the train loader's build and first batch with its reader list written and
then found. Trees up to ``S3_MAX_FILES`` are also put into a bucket of a local S3 server
(SeaweedFS; one PUT a file, which bounds the size), and listed from there as training lists a
tree in a bucket. Every phase reports its seconds and its peak resident memory above its baseline.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import storage
from bench.s3server import S3Server, running_s3_server
from dali_pipelines import ImageFolderData

_logger = logging.getLogger(__name__)

SIZES = (10_000, 100_000, 1_000_000)  # files per tree by default
CLASSES = 1000  # as ImageNet-1k; fewer when a tree has under 10 files a class
LINK_SOURCES = 1000  # distinct JPEGs the links point at, at most
BYTES_PER_FILE = 600  # disk a tree, its cache and its lists take per file, at most (directory entries)
# Trees put into a bucket and listed from there, at most: uploading costs one PUT a file (the
# section's longest wait on a small machine), listing one request per 1,000 names.
S3_MAX_FILES = 100_000
S3_PREFIX = "scale"  # where the trees go in the storage section's bucket
# The sizes the section extrapolates to: ImageNet-1k's train and val sets, and a 10M-file set.
IMAGENET_TRAIN, IMAGENET_VAL, TEN_MILLION = 1_281_167, 50_000, 10_000_000


@dataclass(frozen=True)
class ScaleFigures:
    """One tree's start-up costs: seconds and peak MiB above each phase's baseline (the imports;
    for the loader, the scanned data), the cache's and the reader list's size."""

    files: int
    classes: int
    tree_s: float  # making the hard links (not a start-up cost)
    scan_s: float
    scan_peak_mb: float
    cold_verify_s: float
    cold_verify_peak_mb: float
    warm_verify_s: float
    warm_verify_peak_mb: float
    cache_mb: float
    loader_s: float  # verdict applied, reader list written, train loader built, first batch
    loader_peak_mb: float
    warm_loader_s: float  # the same with the reader list found
    warm_loader_peak_mb: float
    apply_s: float  # the verdict applied (a digest of the listing), as every rank does
    list_mb: float
    # The tree listed from a bucket (None: not measured; over S3_MAX_FILES, or no S3 server here).
    s3_list_s: float | None = None
    s3_list_peak_mb: float | None = None
    s3_upload_s: float | None = None  # putting the tree into the bucket (not a start-up cost)


def needed_bytes(files: int) -> int:
    """Disk a tree of ``files`` files takes with its cache and lists, at most."""
    return files * BYTES_PER_FILE


def build_tree(files: int, sources: ImageFolderData, parent: Path) -> tuple[Path, int]:
    """A tree of ``files`` hard links in ``parent`` (classes of equal size); (its root, classes).
    Sources on another file system are copied into ``parent`` first, then linked."""
    originals = list(sources.files[:LINK_SOURCES])
    if not originals:
        raise ValueError("the scale section needs the run's images to link to; the data set is empty")
    linked = _linkable(originals, parent)
    classes = max(1, min(CLASSES, files // 10))
    root = parent / "tree"
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(c, files, classes):  # file i goes to class i % classes
            os.link(linked[i % len(linked)], folder / f"img_{i:08d}.JPEG")
    return root, classes


def _linkable(originals: list[str], parent: Path) -> list[str]:
    """``originals``, or copies of them in ``parent`` where a hard link cannot reach them."""
    probe = parent / "probe.jpg"
    try:
        os.link(originals[0], probe)
        probe.unlink()
        return originals
    except OSError:  # another file system (EXDEV), or links refused there
        copies = parent / "sources"
        copies.mkdir()
        return [shutil.copy(src, str(copies / f"{i}.jpg")) for i, src in enumerate(originals)]


def phase(name: str, root: str, cache: Path, *, batch_size: int, threads: int, device: str,
          timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One phase in a fresh interpreter (``env``: variables to add to this process's); its figures."""
    command = [sys.executable, "-m", "bench.scale_phase", name, root, "--cache", str(cache),
               "--batch-size", str(batch_size), "--threads", str(threads), "--device", device]
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path})
    if done.returncode != 0:
        tail = done.stderr.strip()[-2000:]
        raise RuntimeError(f"scale phase {name} failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def phase_here(name: str, root: str, cache: Path, *, batch_size: int, threads: int, device: str,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """One phase in this process, its variables restored after: the figures' making, quickly (its
    peaks are not a fresh process's: memory this process freed before is used again)."""
    from bench.scale_phase import run_phase

    added = {**(env or {}), "DALI_PIPELINES_CACHE": str(cache)}
    saved = {key: os.environ.get(key) for key in added}
    try:
        os.environ.update(added)
        return run_phase(name, root, str(cache), batch_size=batch_size, threads=threads, device=device)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure_scale(files: int, sources: ImageFolderData, *, batch_size: int, threads: int, device: str,
                  timeout_s: float, fresh: bool = True, server: S3Server | None = None) -> ScaleFigures:
    """Every phase over a fresh tree of ``files`` files (removed afterwards), each in a fresh
    interpreter (``fresh=False``: in this process, see ``phase_here``). The bucket listing uses
    ``server``, else a local S3 server started for it when the tree is small enough and one can run."""
    with tempfile.TemporaryDirectory(prefix="dali-bench-scale-") as tmp:
        work = Path(tmp)
        free = shutil.disk_usage(work).free
        if free < needed_bytes(files):
            raise OSError(f"the scale section's {files}-file tree needs about "
                          f"{needed_bytes(files) / 2**20:.0f} MiB in {work}; {free / 2**20:.0f} MiB are "
                          "free: set TMPDIR to a larger disk or pass smaller --scale-files")
        start = time.perf_counter()
        root, classes = build_tree(files, sources, work)
        tree_s = time.perf_counter() - start
        cache = work / "cache"

        def run(name: str, where: str = str(root), env: dict[str, str] | None = None) -> dict[str, Any]:
            if fresh:
                return phase(name, where, cache, batch_size=batch_size, threads=threads, device=device,
                             timeout_s=timeout_s, env=env)
            return phase_here(name, where, cache, batch_size=batch_size, threads=threads, device=device,
                              env=env)

        scan = run("scan")
        cold, warm = run("verify"), run("verify")
        loader, warm_loader = run("loader"), run("loader")
        if cold["bad"] or cold["cached"] or warm["checked"]:
            raise RuntimeError(f"scale: the cold pass read {cold['checked']} files and found {cold['bad']} "
                               f"bad, the warm one read {warm['checked']}: not a clean cold/warm pair")
        (cache_file,) = cache.glob("verify-*.sqlite")
        (list_file,) = cache.glob("reader-lists/*.txt")
        bucket: dict[str, Any] = {}
        with _bucket(files, server, work) as serving:
            if serving is not None:
                prefix = f"{S3_PREFIX}/{work.name}"  # a server given may hold another run's trees
                upload_s = upload_tree(serving, root, sources, prefix)
                listed = run("s3-list", f"s3://{storage.BUCKET}/{prefix}", env=serving.env())
                if listed["files"] != files:
                    raise RuntimeError(f"scale: the bucket lists {listed['files']} of the {files} files "
                                       "put there")
                bucket = {"s3_list_s": listed["seconds"], "s3_list_peak_mb": listed["peak_mb"],
                          "s3_upload_s": upload_s}
        return ScaleFigures(
            files=files, classes=classes, tree_s=tree_s, scan_s=scan["seconds"], scan_peak_mb=scan["peak_mb"],
            cold_verify_s=cold["seconds"], cold_verify_peak_mb=cold["peak_mb"],
            warm_verify_s=warm["seconds"], warm_verify_peak_mb=warm["peak_mb"],
            cache_mb=cache_file.stat().st_size / 2**20, loader_s=loader["seconds"],
            loader_peak_mb=loader["peak_mb"], warm_loader_s=warm_loader["seconds"],
            warm_loader_peak_mb=warm_loader["peak_mb"], apply_s=warm_loader["apply_s"],
            list_mb=list_file.stat().st_size / 2**20, **bucket)


@contextmanager
def _bucket(files: int, server: S3Server | None, work: Path) -> Iterator[S3Server | None]:
    """``server``; else one started in ``work`` for a tree within ``S3_MAX_FILES`` when one can run
    here (stopped on the way out); else None."""
    if server is not None:
        yield server
        return
    if files > S3_MAX_FILES or storage.unavailable_reason() is not None:
        _logger.info("scale: %d files are not listed from a bucket (%s)", files,
                     f"over {S3_MAX_FILES}" if files > S3_MAX_FILES else storage.unavailable_reason())
        yield None
        return
    with running_s3_server(work / "s3-server") as started:
        yield started


def upload_tree(server: S3Server, root: Path, sources: ImageFolderData, prefix: str) -> float:
    """Put one object per file of the tree at ``root`` into the bucket, under ``prefix``; seconds.
    Every object holds the smallest of the linked JPEGs: a listing reads names and sizes only."""
    body = Path(min(sources.files[:LINK_SOURCES], key=os.path.getsize)).read_bytes()
    start = time.perf_counter()
    server.put_objects(storage.BUCKET, _keys(root, prefix), body)
    return time.perf_counter() - start


def _keys(root: Path, prefix: str) -> Iterator[str]:
    """The tree's files as object keys under ``prefix``."""
    for folder in sorted(root.iterdir()):
        for name in sorted(os.listdir(folder)):
            yield f"{prefix}/{folder.name}/{name}"
