"""One phase of the scale section, in a fresh process: ``python -m bench.scale_phase PHASE ROOT``.

Prints one JSON object: the phase's seconds and its peak memory above a baseline. Peak resident
memory comes from the kernel's high-water mark (``VmHWM``), reset at the baseline through
``/proc/self/clear_refs``, so a peak between two samples is never missed. Phases:

- ``scan``: the ImageFolder scan; peak above the imports.
- ``verify``: scan, then ``verify_data`` with the cache in ``--cache`` (cold the first time,
  warm after); seconds of the verification, peak above the imports (the command's own cost).
- ``loader``: scan, then what a rank does once the data is verified: apply the verdict
  (``apply_s``), build the train loader and take its first batch; peak above the scan. The
  reader list is written in the cache the first time and found after.
- ``s3-list``: ROOT is ``s3://bucket/prefix``: the tree listed from the bucket as training lists
  it (the AWS variables name the server); peak above the imports, boto3's included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

PHASES = ("scan", "verify", "loader", "s3-list")
_KIB = 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; the scale section needs Linux")


def baseline() -> int:
    """Reset the peak to what is resident now; that amount, in KiB."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # 5: reset the peak resident set size (Linux >= 4.0)
    return _status_kib("VmRSS")


def peak_mb(base_kib: int) -> float:
    """Peak resident memory since ``baseline``, above it, in MiB."""
    return (_status_kib("VmHWM") - base_kib) / _KIB


def run_phase(phase: str, root: str, cache: str, *, batch_size: int, threads: int,
              device: str) -> dict[str, Any]:
    """Do ``phase`` over the tree at ``root``; its figures."""
    os.environ["DALI_PIPELINES_CACHE"] = cache  # where the reader lists go, as in training
    from dali_pipelines import PipelineConfig, make_loader, scan_image_folder
    from dali_pipelines.verify import listing_digest, verify_data
    from dali_pipelines.verify.verdict import Verdict

    if phase == "s3-list":
        return _list_bucket(root)
    start_kib = baseline()
    start = time.perf_counter()
    data = scan_image_folder(root)
    scanned = time.perf_counter()
    if phase == "scan":
        return {"seconds": scanned - start, "peak_mb": peak_mb(start_kib), "files": len(data)}
    if phase == "verify":
        report = verify_data(data, cache_dir=cache, workers=threads)
        return {"seconds": time.perf_counter() - scanned, "peak_mb": peak_mb(start_kib),
                "checked": report.checked, "cached": report.cached, "bad": len(report.bad)}
    verdict = Verdict(listing_digest(data))  # what rank 0 sends when no file is bad
    after_scan = baseline()
    began = time.perf_counter()
    clean = verdict.apply(data)
    applied = time.perf_counter()
    cfg = PipelineConfig(batch_size=batch_size, num_threads=threads, device=device, seed=0)
    loader = make_loader(clean, cfg, train=True)
    images, _ = next(iter(loader))
    seconds = time.perf_counter() - began
    figures = {"seconds": seconds, "peak_mb": peak_mb(after_scan), "apply_s": applied - began,
               "batch": int(images.shape[0])}
    loader.close()
    return figures


def _list_bucket(url: str) -> dict[str, Any]:
    import boto3  # noqa: F401  # imported before the baseline: the listing's cost, not the import's

    from dali_pipelines.sources.s3 import open_bucket

    start_kib = baseline()
    start = time.perf_counter()
    data = open_bucket(url, "folder")
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_mb(start_kib), "files": len(data)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_phase", description=__doc__)
    parser.add_argument("phase", choices=PHASES, help="what to measure")
    parser.add_argument("root", help="the ImageFolder tree (s3-list: its s3:// URL)")
    parser.add_argument("--cache", required=True, help="the verification cache folder (also the lists')")
    parser.add_argument("--batch-size", type=int, default=64, help="the loader's batch (default: 64)")
    parser.add_argument("--threads", type=int, default=2, help="DALI and verification threads (default: 2)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="the loader's device (default: cpu)")
    args = parser.parse_args(argv)
    figures = run_phase(args.phase, args.root, args.cache, batch_size=args.batch_size,
                        threads=args.threads, device=args.device)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
