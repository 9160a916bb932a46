"""``python -m bench check``: its arguments, checked before any work, then the plan and its run."""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

from bench.check.execute import PROJECT_ROOT, Clock, stop_on_sigterm
from bench.check.plan import Setup, describe, fit
from bench.check.steps import STEPS
from dali_pipelines import scan_image_folder
from dali_pipelines._util import argtypes
from dali_pipelines.sources import split_folders
from dali_pipelines.sources.sample import photo_dir

CORES = os.cpu_count() or 1
DEFAULT_BUDGET_S = 480
DEFAULT_SAMPLE_IMAGES = 8000

DESCRIPTION = """\
Prove what a GPU machine does with this project, inside a time budget: the GPU tests (bounded),
a sample set made on every core beside them, the benchmark sections that carry the project's
claims (throughput, hw-decoder, e2e, an e2e sweep of dali-gpu's settings), a short training
run, then five small files in OUT (check.log, check.json, summary.json, check.md,
check.tar.gz), rewritten after every step and job so a run cut short keeps what it measured.
The plan is printed first with its estimate; repeats and sweep points shrink to fit --budget.

  python -m bench check --out runs/check                  on a GPU machine: about 8 minutes
  python -m bench check --plan-only --device gpu --out X  the plan for a GPU machine, nothing run
  python -m bench check --device cpu --budget 60 --out X  the machinery on a CPU (GPU steps skipped)

See docs/gpu-check.md.
"""


def add_check_command(commands: argparse._SubParsersAction) -> None:
    """Add ``check`` to ``python -m bench``'s commands."""
    p = commands.add_parser("check", help="prove a GPU machine in one budgeted command (docs/gpu-check.md)",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DIR", type=Path, required=True,
                   help="folder for the five files, created if missing; earlier files of those names are "
                        "replaced (required)")
    p.add_argument("--budget", metavar="SECONDS", type=argtypes.int_in(10, 86_400), default=DEFAULT_BUDGET_S,
                   help="wall-clock seconds for the whole command, interpreter start-up included; the plan "
                        f"fits inside and the run stops before it ends (default: {DEFAULT_BUDGET_S})")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None,
                   help="where batches are delivered (default: gpu when a CUDA GPU is visible, else cpu)")
    p.add_argument("--workers", metavar="N", type=argtypes.int_in(1, 1024), default=CORES,
                   help=f"workers/threads of each backend; sample writers (default: {CORES}, the cores here)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--sample-images", metavar="N", type=argtypes.int_in(16, 1_000_000),
                      default=DEFAULT_SAMPLE_IMAGES,
                      help="photos in the sample set made in a temp folder "
                           f"(default: {DEFAULT_SAMPLE_IMAGES})")
    data.add_argument("--data", metavar="DIR", type=Path, default=None,
                      help="your JPEG ImageFolder instead of the sample (its train/ is benchmarked; the "
                           "training step needs train/ and val/) (default: the sample set)")
    known = sorted({b for step in STEPS for b in step.backends})
    p.add_argument("--backends", metavar="LIST", type=argtypes.names("--backends", known), default=None,
                   help=f"comma list: measure only these of {','.join(known)} (default: each step's own)")
    p.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu (default: off)")
    p.add_argument("--plan-only", action="store_true",
                   help="print the plan and write nothing; with --device gpu on a machine without one, the "
                        "plan for a GPU machine (default: off)")


def _device(args: argparse.Namespace) -> tuple[str, bool]:
    """(device, a CUDA GPU is visible)."""
    import torch

    visible = torch.cuda.is_available()
    if args.device == "gpu" and not visible and not args.plan_only:
        raise ValueError("--device gpu needs a CUDA GPU and none is visible; use --device cpu, or "
                         "--plan-only to see the plan for a GPU machine")
    device = args.device or ("gpu" if visible else "cpu")
    return device, visible or (device == "gpu" and args.plan_only)


def _tests_skip(args: argparse.Namespace) -> str:
    if args.skip_tests:
        return "--skip-tests"
    if not (PROJECT_ROOT / "tests").is_dir():
        return f"no tests/ folder in {PROJECT_ROOT} (an installed copy)"
    if importlib.util.find_spec("pytest") is None:
        return "pytest is not installed"
    return ""


def make_setup(args: argparse.Namespace, spent_s: float) -> Setup:
    """The plan's view of this machine and these arguments; ValueError (or DatasetError) naming
    what cannot work, before any work."""
    device, gpu_visible = _device(args)
    if args.data is None:
        if not args.plan_only:
            photo_dir()  # scikit-image's photographs: the sample is made from them
        images, train_images, has_val = args.sample_images, args.sample_images * 4 // 5, True
    else:
        if not args.data.is_dir():
            raise ValueError(f"--data {args.data} must be an existing folder")
        splits = split_folders(args.data)
        images = train_images = len(scan_image_folder(splits.get("train", args.data)))
        has_val = "val" in splits
    return Setup(device=device, gpu_visible=gpu_visible, workers=args.workers, images=images,
                 train_images=train_images, make_sample=args.data is None, has_val=has_val,
                 tests_skip=_tests_skip(args), budget_s=float(args.budget), spent_s=spent_s,
                 backends=args.backends)


def run_check(args: argparse.Namespace, *, whole_process: bool) -> int:
    """Plan, print the plan, run it into ``args.out``; the exit status (docs/gpu-check.md).
    ``whole_process``: this process is the command (the budget counts from its start, imports
    included), not a call from other Python code (the budget counts from now)."""
    from bench.check.command import Check
    from bench.check.outputs import Outputs

    clock = Clock(args.budget, since_process_start=whole_process)
    plan = fit(make_setup(args, clock.elapsed()))
    if args.plan_only:
        print("\n".join(describe(plan)))
        return 0
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="dali-check-") as tmp:
        outputs = Outputs(args.out, Path(tmp))
        try:
            for line in describe(plan):
                outputs.line(line)
            return Check(plan, clock, outputs, Path(tmp), argv=args.argv, data=args.data).run()
        finally:
            outputs.close()
