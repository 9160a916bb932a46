"""Command line of the benchmarks: every argument checked before any measurement starts."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench.backends import BACKENDS, PEERS, WORKLOADS
from bench.check.cli import add_check_command, run_check
from bench.records import TIMING, Run, Settings
from bench.scale import SIZES
from bench.sweep import DEFAULT_SECTIONS, E2E_MODELS, GPU_SECTIONS, QUICK_SECTIONS, QUICK_WORKLOADS, SECTIONS
from dali_pipelines import DatasetError
from dali_pipelines._util import argtypes
from dali_pipelines._util.pipes import quiet_broken_pipe

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EXIT_FAILED = 1  # a measurement failed: the others are kept, and the report lists it
SCRATCH_DIR = RESULTS_DIR / "_scratch"  # git-ignored: quick runs never touch committed results
CORES = os.cpu_count() or 1

DESCRIPTION = """\
Measure the same declared work through every data loader: naive, tf.data, DataLoader
(PIL or torchvision decode), torchvision on the GPU, NVIDIA's DALI example graph (dali-ref)
and this project's DALI graphs (dali-cpu, dali-gpu). Each measurement runs in a fresh
process; results go to OUT as JSON, CSV, Markdown and PNG, saved after every measurement.

  python -m bench --quick               about 2 minutes, on a sample set it makes itself
  python -m bench --data DIR            the full sweep on your JPEG ImageFolder
  python -m bench report [DIR] --json   the newest run in DIR as one JSON object
  python -m bench check --out DIR       prove a GPU machine in one budgeted command
"""

SECTION_HELP = {
    "throughput": "img/s of every backend on every workload",
    "scaling": "train img/s over 1, 2, 4, ... workers (torch-pil, dali-cpu, dali-gpu)",
    "hw-decoder": "dali-gpu over hw_decoder_load (GPU)",
    "overlap": "each loader feeding a simulated accelerator step (a sleep)",
    "e2e": "training steps of --e2e-model fed by each GPU loader vs synthetic data, and with train-aug by "
           "dali-gpu and torch-tv (GPU)",
    "e2e-sweep": "the e2e step fed by dali-gpu over DALI threads x hw_decoder_load x prefetch depth (GPU)",
    "soak": "memory over many epochs of the DALI train graph",
    "shards": "the DALI train graph reading WebDataset shards vs loose files",
    "storage": "the DALI train graph reading the same files loose and as shards from local disk and from a "
               "local S3 server (SeaweedFS on 127.0.0.1, started for the section)",
    "capped": "the DALI CPU train graph reading shards with images capped at 512, 384, 256 px (to-shards "
              "--max-side) vs the same shards uncapped: img/s and CPU per image",
    "tune": "the loader tuner's choice (hill climbing, 60 s) beside an exhaustive grid's best and the "
            "defaults, measured again in turn",
    "scale": "start-up over data set size on hard-linked trees (--scale-files): scan, cold and warm "
             "verification, loader build, peak memory (not in the defaults: minutes, and a million links)",
}


def _sizes(text: str) -> tuple[int, ...]:
    """--scale-files: ascending distinct sizes of at least 100 files."""
    try:
        sizes = tuple(sorted({int(item) for item in text.split(",") if item.strip()}))
    except ValueError:
        sizes = ()
    if not sizes or sizes[0] < 100:
        raise argparse.ArgumentTypeError(f"--scale-files takes comma-separated file counts of at least 100; "
                                         f"got {text!r}")
    return sizes


def _folder(flag: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{flag} must be an existing folder; {text!r} is not one")
        return path
    return parse


def _existing(flag: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{flag} must be an existing folder or label list; {text!r} "
                                             "is not one")
        return path
    return parse


def _add_run_args(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to measure")
    what.add_argument("--quick", action="store_true",
                      help=f"a short run: {' and '.join(QUICK_WORKLOADS['cpu'])} workloads with throughput "
                           f"plus overlap on CPU, {' and '.join(QUICK_WORKLOADS['gpu'])} with throughput "
                           "plus e2e on GPU; shorter repeats, a small sample set (default: off)")
    what.add_argument("--sections", metavar="LIST", type=argtypes.names("--sections", SECTIONS), default=None,
                      help="comma list of: " + "; ".join(f"{k}: {v}" for k, v in SECTION_HELP.items())
                           + f" (default: all that apply to the device; {'+'.join(QUICK_SECTIONS['cpu'])} "
                             f"on CPU, {'+'.join(QUICK_SECTIONS['gpu'])} on GPU with --quick)")
    what.add_argument("--e2e-model", choices=tuple(E2E_MODELS), default="googlenet",
                      help="the model e2e and e2e-sweep train: GoogLeNet with its auxiliary heads, or "
                           "ResNet-50 (NVIDIA's DALI reference figure) (default: googlenet)")
    what.add_argument("--backends", metavar="LIST", type=argtypes.names("--backends", list(BACKENDS)),
                      default=None,
                      help=f"comma list of {','.join(BACKENDS)} (default: all that can run here; "
                           f"with --quick or --device gpu all but {','.join(PEERS)})")
    what.add_argument("--workloads", metavar="LIST", type=argtypes.names("--workloads", list(WORKLOADS)),
                      default=None,
                      help="comma list of: " + "; ".join(f"{k}: {v}" for k, v in WORKLOADS.items())
                           + f" (default: all; with --quick {','.join(QUICK_WORKLOADS['cpu'])} on CPU, "
                             f"{','.join(QUICK_WORKLOADS['gpu'])} on GPU)")
    what.add_argument("--device", choices=("cpu", "gpu"), default=None,
                      help="where batches are delivered (default: gpu when a CUDA GPU is visible, else cpu)")
    what.add_argument("--batch-size", metavar="N", type=argtypes.int_in(1, 4096), default=None,
                      help="batch size, except e2e's 256 (default: 64 on CPU, 256 on GPU; half with --quick)")
    what.add_argument("--max-workers", metavar="N", type=argtypes.int_in(1, 1024), default=CORES,
                      help=f"workers/threads of each backend; scaling goes 1, 2, 4, ... below it "
                           f"(default: {CORES}, the cores here)")
    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="PATH", type=_existing("--data"), default=None,
                      help="JPEG ImageFolder, or a label list (.csv, .tsv or a DALI file list); its train/ "
                           "when it has train/ and val/ (default: a sample set made in a temp folder)")
    data.add_argument("--list-root", metavar="DIR", type=_folder("--list-root"), default=None,
                      help="for a label list: the folder its relative paths start from (default: the "
                           "list's folder)")
    data.add_argument("--images", metavar="N", type=argtypes.int_in(16, 1_000_000), default=None,
                      help="images in the sample set made without --data (default: 2000; 320 with --quick "
                           "on CPU, 640 on GPU)")
    data.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                      help="a file that fails verification stops the run before any measurement, or is "
                           "left out of every backend (default: error)")
    data.add_argument("--shards", metavar="DIR", type=_folder("--shards"), default=None,
                      help="WebDataset shards of the same images for the shards and storage sections "
                           "(default: --data converted into the temp folder, reused by later runs)")
    data.add_argument("--scale-files", metavar="LIST", type=_sizes, default=None,
                      help="tree sizes of the scale section, comma-separated (default: "
                           f"{','.join(str(n) for n in SIZES)})")
    timing = p.add_argument_group("timing")
    timing.add_argument("--warmup-s", metavar="SECONDS", type=argtypes.non_negative_float, default=None,
                        help="untimed warm-up per measurement, seconds (default: 1; 0.5 with --quick)")
    timing.add_argument("--repeat-s", metavar="SECONDS", type=argtypes.non_negative_float, default=None,
                        help="least time of each timed repeat, seconds (default: 2; 1 with --quick)")
    timing.add_argument("--repeats", metavar="N", type=argtypes.int_in(3, 100), default=3,
                        help="timed repeats per measurement, reported as median and min-max (default: 3)")
    timing.add_argument("--soak-epochs", metavar="N", type=argtypes.int_in(2, 100_000), default=30,
                        help="timed epochs of the soak section, after one warm-up epoch (default: 30)")
    timing.add_argument("--timeout", metavar="SECONDS", type=argtypes.int_in(10, 86400), default=600,
                        help="seconds before a measurement is abandoned, recorded as failed (default: 600)")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", type=Path, default=None,
                     help=f"results folder, created if missing (default: {RESULTS_DIR}; {SCRATCH_DIR} with "
                          "--quick)")


def get_args_parser() -> argparse.ArgumentParser:
    """``python -m bench [run options]`` and ``python -m bench report [DIR] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_args(parser)
    commands = parser.add_subparsers(dest="command", title="other commands")
    report = commands.add_parser(
        "report", help="print the tables of the newest run in a folder and redraw its figures",
        description="Print the Markdown tables of the newest run in DIR and redraw its figures, or with "
                    "--json print one JSON object summing it up.")
    report.add_argument("dir", nargs="?", type=_folder("DIR"), default=RESULTS_DIR, metavar="DIR",
                        help=f"folder holding benchmark runs (default: {RESULTS_DIR})")
    report.add_argument("--json", action="store_true",
                        help="print a JSON summary (device, cpus, throughput per backend and workload, "
                             "train-aug / train per backend, skipped jobs, e2e efficiency per loader "
                             "('dali-gpu+train-aug' for train-aug), ratios to dali-ref, command, date) "
                             "instead; write nothing (default: off)")
    add_check_command(commands)
    return parser


# ---------------------------------------------------------------- checks before any work


def check_out_dir(path: Path) -> None:
    """Raise ValueError, naming ``path`` and the fix, unless it is or can become a writable folder.

    Nothing is created here (a run refused later leaves no trace); the folder is made just
    before the first measurement.
    """
    fix = "pass --out with a folder you can write to"
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; {fix}")
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {path} cannot be created: {existing} is a file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        raise ValueError(f"--out {path} {what}; {fix}")
    if existing == path:  # access() trusts permissions; a probe also catches read-only mounts for root
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as err:
            raise ValueError(f"--out {path} is not writable ({err.strerror}); {fix}") from None


def _device(args: argparse.Namespace) -> str:
    if args.device == "gpu" and not torch.cuda.is_available():
        raise ValueError("--device gpu needs a CUDA GPU and none is visible; use --device cpu")
    return args.device or ("gpu" if torch.cuda.is_available() else "cpu")


def _sections(args: argparse.Namespace, device: str) -> tuple[str, ...]:
    if args.scale_files is not None and "scale" not in (args.sections or ()):
        raise ValueError("--scale-files is read only by the scale section; add scale to --sections "
                         "or drop --scale-files")
    if args.sections is None:
        return (QUICK_SECTIONS if args.quick else DEFAULT_SECTIONS)[device]
    needs_gpu = [s for s in args.sections if s in GPU_SECTIONS]
    if needs_gpu and device != "gpu":
        raise ValueError(f"--sections {','.join(needs_gpu)} needs --device gpu and a CUDA GPU; "
                         f"leave {'it' if len(needs_gpu) == 1 else 'them'} out on this machine")
    if args.shards is not None and not {"shards", "storage"} & set(args.sections):
        raise ValueError("--shards is read only by the shards section and the storage section; add one "
                         "to --sections or drop --shards")
    return args.sections


def _backends(args: argparse.Namespace, device: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(backends to run, {backend left out by default: why})."""
    reasons = {name: b.unavailable_reason(device) for name, b in BACKENDS.items()}
    if args.backends is not None:
        bad = [f"{name} {reasons[name]}" for name in args.backends if reasons[name]]
        if bad:
            raise ValueError(f"--backends: {'; '.join(bad)}")
        return tuple(name for name in BACKENDS if name in args.backends), {}  # registry order
    # The peers would take --quick past its 2 minutes and the full GPU sweep past its 8 (the GPU
    # check's budget); named in --backends, they run.
    if args.quick or device == "gpu":
        why = "not in --quick" if args.quick else "not in a GPU run"
        reasons.update({n: f"{why} by default: name it in --backends" for n in PEERS if not reasons[n]})
    return (tuple(n for n, why in reasons.items() if not why),
            {n: why for n, why in reasons.items() if why})


def resolve(args: argparse.Namespace) -> tuple[Settings, dict[str, str]]:
    """The run's settings from the arguments and this machine, and the backends left out;
    ValueError (naming the argument and the fix) for anything that cannot run here."""
    device = _device(args)
    sections = _sections(args, device)
    backends, left_out = _backends(args, device)
    quick = args.quick
    timing = dict(TIMING["quick" if quick else "full"])
    given = {"warmup_s": args.warmup_s, "repeat_s": args.repeat_s}
    timing.update({name: value for name, value in given.items() if value is not None})
    settings = Settings(
        sections=sections, backends=backends,
        workloads=args.workloads or (QUICK_WORKLOADS[device] if quick else tuple(WORKLOADS)), device=device,
        batch_size=args.batch_size or {"cpu": 64, "gpu": 256}[device] // (2 if quick else 1),
        max_workers=args.max_workers, repeats=args.repeats, soak_epochs=args.soak_epochs,
        timeout_s=args.timeout, quick=quick, **timing, scale_files=args.scale_files or SIZES,
        e2e_model=args.e2e_model)
    return settings, left_out


# ---------------------------------------------------------------- commands


def run_command(args: argparse.Namespace, tmp: Path) -> Run:
    """Check everything, prepare the data, then measure section by section, saving as it goes."""
    from bench.data import capped_shards_for, load_jpeg_folder, make_temp_sample, shards_for
    from bench.publish import publish, saver
    from bench.records import RunData, new_run
    from bench.storage import StorageSources, unavailable_reason
    from bench.sweep import CAPPED_SIDES, data_sources, describe_plan, plan, run_sweep

    settings, left_out = resolve(args)
    if args.images is not None and args.data is not None:
        raise ValueError("--images sizes the sample set made without --data; drop one of them")
    out_dir = args.out or (SCRATCH_DIR if args.quick else RESULTS_DIR)
    check_out_dir(out_dir)
    device_images = {"cpu": 320, "gpu": 640}[settings.device]
    root = args.data or make_temp_sample(args.images or (device_images if args.quick else 2000), tmp)
    files = load_jpeg_folder(root, on_bad_file=args.on_bad_file,  # once per run, before any job
                             list_root=args.list_root)
    sections = plan(settings)
    if not sections:
        raise ValueError(f"nothing to measure: --sections {','.join(settings.sections)} has no job for "
                         f"--backends {','.join(settings.backends)} on {settings.device}")
    # Shards of a sample made for this run go with it; shards of --data are kept for later runs.
    workdir = None if args.data else tmp
    needs_shards = {"shards", "storage"} & set(sections)
    shards = shards_for(files, args.shards, workdir) if needs_shards else None
    capped = capped_shards_for(files, CAPPED_SIDES, workdir) if "capped" in sections else None
    out_dir.mkdir(parents=True, exist_ok=True)
    run = new_run(args.argv, dataclasses.replace(settings, sections=tuple(sections)),
                  RunData(name=str(root), images=len(files), classes=len(files.classes)), left_out)
    print(f"bench: {describe_plan(sections)}; results in {out_dir}/{run.stem}.*", file=sys.stderr)
    sources = StorageSources(data_sources(files, shards, capped), tmp)
    try:
        if "storage" in sections and unavailable_reason() is None:  # else its S3 jobs are skipped
            sources.start()  # before the first job: job processes keep the environment of the first
        run_sweep(sections, sources, settings.timeout_s, saver(run, out_dir))
    finally:
        sources.close()
    md = publish(run, out_dir, plots=True)
    print(md.read_text(encoding="utf-8"))
    print(f"results: {out_dir}/{run.stem}.{{json,csv,md}} and *.png", file=sys.stderr)
    return run


def report_command(args: argparse.Namespace) -> None:
    """Print the newest run in ``args.dir``: Markdown (files redrawn) or the JSON summary."""
    from bench.queries import summary
    from bench.records import newest_run

    path, run = newest_run(args.dir)
    if args.json:
        print(json.dumps(summary(run, path), indent=1))
        return
    from bench.publish import publish  # matplotlib: only when figures are drawn

    try:
        md = publish(run, args.dir, plots=True)
    except OSError as err:
        raise ValueError(f"{args.dir} is not writable ({err.strerror}); copy the run elsewhere to "
                         "redraw it, or use --json") from None
    print(md.read_text(encoding="utf-8"))


def failed_status(run: Run) -> int:
    """0 when every job of ``run`` was measured or skipped; else ``EXIT_FAILED``, said on stderr."""
    from bench.queries import failed_rows

    failed = failed_rows(run)
    if not failed:
        return 0
    print(f"bench: {len(failed)} of {len(run.results)} measurements failed (the report's 'Failed jobs' "
          f"says why); exit status {EXIT_FAILED}", file=sys.stderr)
    return EXIT_FAILED


@quiet_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench`` and ``dali-bench``; 0 on success, 1 when a measurement
    failed (the others are kept), 2 on bad input."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with the results
    try:
        if args.command == "report":
            report_command(args)
            return 0
        if args.command == "check":
            check_out_dir(args.out)
            return run_check(args, whole_process=argv is None)
        with tempfile.TemporaryDirectory(prefix="dali-bench-") as tmp:
            run = run_command(args, Path(tmp))
    except BrokenPipeError:  # stdout's reader went away: quiet_broken_pipe ends the command
        raise
    except (DatasetError, ValueError, OSError) as err:  # OSError: its message names the file
        print(f"error: {err}", file=sys.stderr)
        return 2
    return failed_status(run)
