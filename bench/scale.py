"""The scale section: what start-up costs as a data set grows, on synthetic ImageFolder trees.

A tree of N files in up to 1,000 classes is made of hard links to the run's own JPEGs (a few
hundred real photos, so the header pass reads real content and the page cache holds it all),
then each phase runs in a fresh process (``bench.scale_phase``): the scan, a cold and a warm
verification, and the train loader's build and first batch with its reader list written and
then found. Every phase reports its seconds and its peak resident memory above its baseline.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dali_pipelines import ImageFolderData

_logger = logging.getLogger(__name__)

SIZES = (10_000, 100_000, 1_000_000)  # files per tree by default
CLASSES = 1000  # as ImageNet-1k; fewer when a tree has under 10 files a class
LINK_SOURCES = 1000  # distinct JPEGs the links point at, at most
BYTES_PER_FILE = 600  # disk a tree, its cache and its lists take per file, at most (directory entries)
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


def phase(name: str, root: Path, cache: Path, *, batch_size: int, threads: int, device: str,
          timeout_s: float) -> dict[str, Any]:
    """One phase in a fresh interpreter; its figures."""
    command = [sys.executable, "-m", "bench.scale_phase", name, str(root), "--cache", str(cache),
               "--batch-size", str(batch_size), "--threads", str(threads), "--device", device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip()[-2000:]
        raise RuntimeError(f"scale phase {name} failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_scale(files: int, sources: ImageFolderData, *, batch_size: int, threads: int, device: str,
                  timeout_s: float) -> ScaleFigures:
    """Every phase over a fresh tree of ``files`` files (removed afterwards)."""
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

        def run(name: str) -> dict[str, Any]:
            return phase(name, root, cache, batch_size=batch_size, threads=threads, device=device,
                         timeout_s=timeout_s)

        scan = run("scan")
        cold, warm = run("verify"), run("verify")
        loader, warm_loader = run("loader"), run("loader")
        if cold["bad"] or cold["cached"] or warm["checked"]:
            raise RuntimeError(f"scale: the cold pass read {cold['checked']} files and found {cold['bad']} "
                               f"bad, the warm one read {warm['checked']}: not a clean cold/warm pair")
        (cache_file,) = cache.glob("verify-*.sqlite")
        (list_file,) = cache.glob("reader-lists/*.txt")
        return ScaleFigures(
            files=files, classes=classes, tree_s=tree_s, scan_s=scan["seconds"], scan_peak_mb=scan["peak_mb"],
            cold_verify_s=cold["seconds"], cold_verify_peak_mb=cold["peak_mb"],
            warm_verify_s=warm["seconds"], warm_verify_peak_mb=warm["peak_mb"],
            cache_mb=cache_file.stat().st_size / 2**20, loader_s=loader["seconds"],
            loader_peak_mb=loader["peak_mb"], warm_loader_s=warm_loader["seconds"],
            warm_loader_peak_mb=warm_loader["peak_mb"], apply_s=warm_loader["apply_s"],
            list_mb=list_file.stat().st_size / 2**20)
