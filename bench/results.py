"""Result files: one JSON record per run (with machine, versions, command) and a flat CSV."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

from dali_pipelines import atomic_write, write_json_atomic

_logger = logging.getLogger(__name__)
_RUN_NAME = re.compile(r".+-\d{4}-\d{2}-\d{2}\.json")

CSV_COLUMNS = (
    "section", "backend", "workload", "batch_size", "workers", "device", "step_ms", "hw_decoder_load",
    "status", "reason", "images_per_s", "images_per_s_min", "images_per_s_max", "cpu_s_per_1000",
    "peak_pss_mb", "memory_metric", "peak_gpu_mb", "data_wait_frac", "gpu_idle_frac", "images",
    "load_avg_1m",
)


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the job's fields with the measurement's fields inline."""
    row = {**record, **record.get("measurement", {})}
    return {column: row.get(column, "") for column in CSV_COLUMNS}


def results_stem(run: dict[str, Any]) -> str:
    """``<machine>-<date>``, the base name of a run's files."""
    return f"{run['machine_slug']}-{run['date']}"


def write_run(run: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<machine>-<date>.json`` and ``.csv`` into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(run)
    json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
    write_json_atomic(json_path, run)  # rewritten after every job: never leave half a file
    with atomic_write(csv_path, newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(flat_row(r) for r in run["results"])
    _logger.info("wrote %s and %s", json_path, csv_path)
    return json_path, csv_path


def newest_run_file(out_dir: Path) -> Path:
    """The most recently written run JSON in ``out_dir`` (soak files excluded)."""
    if not out_dir.is_dir():
        raise FileNotFoundError(
            f"--out {out_dir} is not a folder; run `python -m bench --out {out_dir}` first")
    # <machine>-<YYYY-MM-DD>.json only: other tools (e.g. shards_vs_files) write JSON here too.
    candidates = [p for p in out_dir.glob("*.json")
                  if _RUN_NAME.fullmatch(p.name) and not p.name.startswith("soak-")]
    if not candidates:
        raise FileNotFoundError(f"no results JSON in {out_dir}; run `python -m bench --out {out_dir}` first")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_json(path: Path) -> dict[str, Any]:
    """A results JSON, with a message naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable results JSON ({err}); rerun the benchmark") from err
    if not isinstance(data, dict) or ("results" not in data and "epochs" not in data):
        raise ValueError(f"{path} is not a bench results file (no 'results' or 'epochs' key)")
    return data


def ok_rows(run: dict[str, Any], section: str, **match: Any) -> list[dict[str, Any]]:
    """Successful records of ``section`` whose fields equal ``match``."""
    return [r for r in run["results"] if r["section"] == section and r["status"] == "ok"
            and all(r.get(k) == v for k, v in match.items())]
