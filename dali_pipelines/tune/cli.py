"""The ``tune`` command: search a loader's settings here, print the points tried, save the choice."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import write_json_atomic
from dali_pipelines.config import AUGMENTS, DTYPES, PipelineConfig, default_cache_dir
from dali_pipelines.sources import FORMATS, DataSource, open_train_val
from dali_pipelines.tune.measure import MeasureSpec
from dali_pipelines.tune.scorers import AMP_MODES
from dali_pipelines.tune.search import Point, Score
from dali_pipelines.tune.space import pipeline_space
from dali_pipelines.tune.store import TuneStore, default_store_dir
from dali_pipelines.tune.table import format_summary, format_table
from dali_pipelines.tune.tuner import DEFAULT_SECONDS, DEFAULT_TOLERANCE, check_request, tune
from dali_pipelines.verify import prepare_data

_logger = logging.getLogger(__name__)


def _listed(item: Callable[[str], Any], wanted: str) -> Callable[[str], list[Any]]:
    """An argparse type for comma-separated values, each parsed by ``item``."""
    def parse(text: str) -> list[Any]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return values

    parse.__name__ = wanted
    return parse


def _dtype(text: str) -> str:
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DTYPES)}, got {text!r}")
    return text


def _load(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected hardware-decoder loads in [0, 1], got {value}")
    return value


def add_tune_command(commands: argparse._SubParsersAction) -> None:
    """The ``tune`` sub-command's arguments; its ``run`` default is ``run_tune``."""
    gpu = "gpu" if torch.cuda.is_available() else "cpu"
    tune_cmd = commands.add_parser(
        "tune", help="pick the loader's threads and prefetch depth (GPU: also hardware-decoder share and "
        "dtype) by measuring them here",
        description="Search DALI loader settings on this machine: each point is a real loader, timed "
        "feeding training steps of --model (or alone), after a warm-up, over repeats. Prints the points "
        "tried and saves the choice (JSON) for this machine, data and model.")
    tune_cmd.add_argument("data", metavar="DATA", help="an ImageFolder tree, a label list, a data root with "
                          "train/ (then train/ is used) or WebDataset shards")
    tune_cmd.add_argument("--device", choices=("gpu", "cpu"), default=gpu,
                          help=f"gpu: nvJPEG + GPU ops; cpu: the same graph on CPU threads (default: {gpu})")
    tune_cmd.add_argument("--model", default=None, help="score by training steps of this torchvision model "
                          "(builder name, e.g. googlenet; random weights) (default: the loader alone)")
    tune_cmd.add_argument("--seconds", type=argtypes.positive_seconds, default=DEFAULT_SECONDS,
                          help=f"time budget of the whole tuning (default: {DEFAULT_SECONDS:g})")
    tune_cmd.add_argument("--grid", action="store_true", help="score every point of the space (within "
                          "--seconds) instead of hill climbing from the defaults (default: hill climbing)")
    tune_cmd.add_argument("--batch-size", type=argtypes.int_in(1, 65536), default=64,
                          help="images per batch (default: 64)")
    tune_cmd.add_argument("--image-size", type=argtypes.int_in(8, 4096), default=224,
                          help="side of the crops the train graph emits (default: 224)")
    tune_cmd.add_argument("--augment", choices=AUGMENTS, default="basic",
                          help="train-time policy of the graph (default: basic)")
    tune_cmd.add_argument("--amp", choices=AMP_MODES, default="bf16",
                          help="the model's mixed precision on the GPU; ignored on the CPU (default: bf16)")
    tune_cmd.add_argument("--format", choices=FORMATS, default="auto", help="data layout (default: auto)")
    _add_space(tune_cmd)
    tune_cmd.add_argument("--tolerance", type=argtypes.non_negative_float, default=DEFAULT_TOLERANCE,
                          help="a point replaces the defaults only when it scores this fraction more "
                          f"(default: {DEFAULT_TOLERANCE:g})")
    tune_cmd.add_argument("--confirm", type=argtypes.int_in(0, 100), default=2,
                          help="scorings more of the defaults and of a winner, in turn, before it is chosen "
                          "(default: 2)")
    tune_cmd.add_argument("--warmup-s", type=argtypes.non_negative_float, default=MeasureSpec.warmup_s,
                          help=f"untimed seconds per point (default: {MeasureSpec.warmup_s:g})")
    tune_cmd.add_argument("--repeat-s", type=argtypes.non_negative_float, default=MeasureSpec.repeat_s,
                          help=f"seconds per timed repeat (default: {MeasureSpec.repeat_s:g})")
    tune_cmd.add_argument("--repeats", type=argtypes.positive_int, default=MeasureSpec.repeats,
                          help="timed repeats per point; the score is their median "
                          f"(default: {MeasureSpec.repeats})")
    tune_cmd.add_argument("--out", type=Path, default=None,
                          help="also write the record (settings, points tried) to this JSON file "
                          "(default: none)")
    tune_cmd.add_argument("--no-save", action="store_true",
                          help=f"do not save the tuning in {default_store_dir()} (default: save)")
    tune_cmd.set_defaults(run=run_tune)


def _add_space(tune_cmd: argparse.ArgumentParser) -> None:
    tune_cmd.add_argument("--threads", type=_listed(argtypes.int_in(1, 1024), "thread counts"), default=None,
                          help="num_threads candidates, comma-separated (default: 1, 2, 3, 4, 6, 8, 12, ... "
                          "up to the usable cores)")
    tune_cmd.add_argument("--prefetch", type=_listed(argtypes.int_in(1, 32), "depths"), default=None,
                          help="prefetch_queue_depth candidates (default: 1,2,3,4)")
    tune_cmd.add_argument("--hw-decoder-load", type=_listed(_load, "loads"), default=None,
                          help="GPU only: hw_decoder_load candidates (default: 0,0.25,0.5,0.75,1)")
    tune_cmd.add_argument("--dtypes", type=_listed(_dtype, "dtypes"), default=None,
                          help="GPU only: output dtype candidates (default: float32,float16; float16 "
                          "only with --amp bf16/fp16 or without --model)")


def run_tune(args: argparse.Namespace) -> int:
    """Tune, print the table and the choice, save the record; 0 when done."""
    base = PipelineConfig(batch_size=args.batch_size, device=args.device, crop_size=args.image_size,
                          resize_size=max(args.image_size, round(args.image_size * 256 / 224)),
                          augment=args.augment, layout="NHWC" if args.device == "gpu" else "NCHW")
    # float16 batches: fine for the loader alone and for a model under autocast (GPU only).
    space = pipeline_space(base, half_ok=args.model is None or args.amp != "off",
                           threads=args.threads, prefetch=args.prefetch,
                           hw_decoder_loads=args.hw_decoder_load, dtypes=args.dtypes)
    spec = MeasureSpec(warmup_s=args.warmup_s, repeat_s=args.repeat_s, repeats=args.repeats)
    method = "grid" if args.grid else "hill"
    check_request(base, model=args.model, seconds=args.seconds, method=method, amp=args.amp)
    source = _verified(open_train_val(args.data, fmt=args.format, with_val=False).train)
    result = tune(source, base, model=args.model, seconds=args.seconds, method=method,
                  amp=args.amp, space=space, spec=spec, tolerance=args.tolerance, confirm=args.confirm,
                  store=None if args.no_save else TuneStore(), on_point=_print_point)
    print(format_table(result))
    print(format_summary(result))
    if result.path is not None:
        print(f"saved: {result.path}")
    if args.out is not None:
        write_json_atomic(args.out, result.to_record())
        print(f"written: {args.out}")
    return 0


def _verified(source: DataSource) -> DataSource:
    """The data checked first (cached in the project's cache folder): one undecodable JPEG would
    stop every loader the search builds. Shards: each against its recorded checksum."""
    return prepare_data(source, cache_dir=default_cache_dir())


def _print_point(point: Point, score: Score) -> None:
    settings = ", ".join(f"{k}={v}" for k, v in point.items())
    print(f"  {settings}: {score.value:.1f} images/s ({score.low:.1f}-{score.high:.1f})", flush=True)

