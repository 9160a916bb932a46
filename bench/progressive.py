"""What progressive resizing saves: ``python -m bench.progressive --data DIR``.

Trains ``--model`` for 2K epochs with ``--progressive-resize START:END:K-1:K`` (K epochs at START,
then K at END) through ``python -m train`` in a fresh process, and reads the run's epochs.csv:
wall time per image of each epoch's training (evaluation excluded), the first epoch at each size
left out (graph build, allocator and kernel warm-up). Prints the median (and range) per image at
START and at END, their ratio, and the ideal (START/END)^2 of a cost that grows with the pixel
count, with the 1.2 margin of the project's target. --out FILE keeps them as JSON with the epochs,
the machine, versions, date, command and the load average around the run (bench/results/progressive-*
are such files; ``bench report`` does not read them).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.records import machine_info, versions
from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import write_json_atomic
from train.resolution import ResizeSchedule

TARGET_MARGIN = 1.2  # per image at START <= (START/END)^2 x this x per image at END


def train_command(args: argparse.Namespace, schedule: ResizeSchedule, out: Path) -> list[str]:
    """The ``python -m train`` command of the measured run."""
    per_size = args.epochs_per_size
    command = [sys.executable, "-m", "train", "--data", str(args.data), "--model", args.model,
               "--device", args.device, "--batch-size", str(args.batch_size), "--epochs", str(2 * per_size),
               "--progressive-resize", f"{schedule.start}:{schedule.end}:{per_size - 1}:{per_size}",
               "--log-every", "1000000", "--save-every", "1000000", "--lr", "0.01", "--warmup-epochs", "0",
               "--out", str(out), "--overwrite"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    return command


def read_epochs(epochs_csv: Path) -> list[dict[str, float]]:
    """Each epoch's training size, training seconds and images/s, from the run's epochs.csv."""
    with open(epochs_csv, newline="", encoding="utf-8") as handle:
        return [{"epoch": int(row["epoch"]), "train_size": int(row["train_size"]),
                 "seconds": float(row["seconds"]), "images_per_s": float(row["images_per_s"])}
                for row in csv.DictReader(handle)]


def per_image_seconds(epochs: list[dict[str, float]]) -> dict[int, list[float]]:
    """Training seconds per image of each epoch, by training size, the first epoch of each size left out."""
    by_size: dict[int, list[float]] = {}
    for row in epochs:
        by_size.setdefault(int(row["train_size"]), []).append(1.0 / row["images_per_s"])
    return {size: times[1:] for size, times in by_size.items()}


def figures(times: dict[int, list[float]], schedule: ResizeSchedule) -> dict[str, Any]:
    """Median and range per size, the START/END ratio and the target's bound."""
    for size in (schedule.start, schedule.end):
        if not times.get(size):
            raise ValueError(f"no epoch at {size} px after the first one; measure at least 2 epochs per size")
    start, end = statistics.median(times[schedule.start]), statistics.median(times[schedule.end])
    ideal = (schedule.start / schedule.end) ** 2
    return {
        "start_size": schedule.start, "end_size": schedule.end,
        "start_ms_per_image": 1e3 * start, "end_ms_per_image": 1e3 * end,
        "start_range_ms": [1e3 * min(times[schedule.start]), 1e3 * max(times[schedule.start])],
        "end_range_ms": [1e3 * min(times[schedule.end]), 1e3 * max(times[schedule.end])],
        "ratio": start / end, "pixel_ratio": ideal, "target": ideal * TARGET_MARGIN,
        "meets_target": start / end <= ideal * TARGET_MARGIN,
    }


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of python -m bench.progressive."""
    parser = argparse.ArgumentParser(prog="python -m bench.progressive",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="data root with train/ and val/ (e.g. python -m dali_pipelines make-sample DIR)")
    parser.add_argument("--model", default="resnet18", metavar="NAME", help="model (default: resnet18)")
    parser.add_argument("--sizes", default="160:192", metavar="START:END",
                        help="the two training sizes, multiples of 32 (default: 160:192, FFCV's ResNet-50)")
    parser.add_argument("--epochs-per-size", type=argtypes.int_in(2, 100), default=3, metavar="K",
                        help="epochs at each size; the first of each is warm-up (default: 3)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="(default: cpu)")
    parser.add_argument("--batch-size", type=argtypes.int_in(1, 4096), default=32, metavar="N",
                        help="(default: 32)")
    parser.add_argument("--workers", type=argtypes.int_in(1, 1024), metavar="N",
                        help="DALI threads (default: train's)")
    parser.add_argument("--torch-threads", type=argtypes.int_in(1, 1024), metavar="N",
                        help="torch's intra-op threads in the training process (OMP_NUM_THREADS): 1 on "
                             "busy cores, where a CPU step's threads wait on each other (default: torch's)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="write the figures, epochs, machine, versions and command as JSON here "
                             "(default: none)")
    parser.add_argument("--note", default="", metavar="TEXT",
                        help="a remark kept in --out's file, e.g. what else ran on the machine "
                             "(default: none)")
    return parser


def input_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line naming the argument and the fix; None if nothing."""
    try:
        ResizeSchedule.parse(args.sizes)
    except ValueError as err:
        return f"--sizes {args.sizes}: {err}"
    missing = [split for split in ("train", "val") if not (args.data / split).is_dir()]
    if missing:
        return (f"--data {args.data}: no {' or '.join(f'{m}/' for m in missing)} folder; pass a root with "
                "train/ and val/ (python -m dali_pipelines make-sample DIR makes one)")
    if args.out is not None and not args.out.parent.is_dir():
        return f"--out {args.out}: {args.out.parent} is not a folder; create it or pass another --out"
    return None


def measure_run(args: argparse.Namespace, schedule: ResizeSchedule) -> dict[str, Any]:
    """Train in a fresh process and return the figures with the epochs and the run's circumstances;
    RuntimeError with the end of its stderr when the training run fails."""
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dali-progressive-") as tmp:
        command = train_command(args, schedule, Path(tmp) / "run")
        env = dict(os.environ)
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"the training run failed ({done.returncode}):\n{done.stderr[-2000:]}")
        epochs = read_epochs(Path(tmp) / "run" / "epochs.csv")
    result = figures(per_image_seconds(epochs), schedule)
    result.update(train_command=" ".join(command[1:]), date=started.isoformat(timespec="seconds"),
                  machine=dataclasses.asdict(machine_info()), versions=versions(),
                  load_average={"before": list(load_before), "after": list(os.getloadavg())},
                  torch_threads=args.torch_threads, note=args.note, epochs=epochs)
    return result


def summary_line(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """The figures in one line for people."""
    start, end = result["start_range_ms"], result["end_range_ms"]
    return (f"{args.model} on {args.device}, batch {args.batch_size}: {result['start_ms_per_image']:.2f} "
            f"ms/image at {result['start_size']} px (range {start[0]:.2f}-{start[1]:.2f}), "
            f"{result['end_ms_per_image']:.2f} at {result['end_size']} px (range {end[0]:.2f}-{end[1]:.2f}); "
            f"ratio {result['ratio']:.3f}, pixel ratio {result['pixel_ratio']:.3f}, target <= "
            f"{result['target']:.3f}: {'met' if result['meets_target'] else 'not met'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement; 0 when it ran (whether or not the target is met), 2 on bad input or a
    failed training run."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(given)
    problem = input_error(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        result = measure_run(args, ResizeSchedule.parse(args.sizes))
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["command"] = " ".join(["python -m bench.progressive", *map(shlex.quote, given)])
    print(summary_line(args, result))
    if args.out:
        write_json_atomic(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
