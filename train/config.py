"""Every training setting, declared once: flag, default, help, accepted values and resume rule.

The command line (``get_args_parser``) is built from these declarations and ``TrainConfig``
validates every value against them, whether it came from the command line, a checkpoint
or Python code. A new setting is one new field here; the parser, the validation, the
``config.json`` record, the checkpoint and the resume checks pick it up.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import write_json_atomic
from dali_pipelines._util.fields import Check, check_fields, declared, parsed_by
from dali_pipelines.config import AUGMENTS
from dali_pipelines.verify import DEFAULT_MAX_PIXELS
from train.models import DEFAULT_MODEL, fixed_size_argument, model_name
from train.resolution import ResizeSchedule, schedule_text

REFERENCE_BATCH = 256  # the learning rate given on the command line is per 256 images
OPTIMIZERS = ("sgd", "adamw", "lamb", "lars")  # train.optim builds them

# What a resumed run may do with a setting given beside --resume.
MATCH = "match"  # decides the sample order, schedule or numerics: must equal the saved value
FREE = "free"  # may change when a run continues (where it writes, how often, how fast)
INVOCATION = "invocation"  # describes this command, not the run: never taken from a checkpoint


class ConfigError(ValueError):
    """A setting has a value it does not accept; the message names the flag."""


def default_device() -> str:
    """GPU when torch sees one, else the CPU fallback."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def absolute_path(text: str) -> str:
    """A path made absolute, so a resumed run finds the data from any working directory; a URL
    (``s3://bucket/prefix``) as it is."""
    if "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def probability(text: str) -> float:
    """argparse type: a probability in [0, 1] (``argtypes.fraction`` excludes 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value}")
    return value


def _accepts(default: Any, parse: Callable[[str], Any] | None, choices: tuple[str, ...] | None,
             text: bool) -> Check:
    """The check of a setting's values, in the command line's words."""
    def check(value: Any, cfg: Any) -> str | None:
        if value is None:
            return None if default is None else "a value is required"
        if text:
            return _parsed_text(parse, value)
        if isinstance(default, bool):
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if choices is not None:
            if value in choices:
                return None
            return f"invalid choice: {value!r} (choose from {', '.join(map(repr, choices))})"
        if parse is None or parse is absolute_path:
            return None if isinstance(value, str) else f"expected a path, got {value!r}"
        # The argparse type declares what is accepted: it judges the value's text form too.
        return parsed_by(parse)(value, cfg)
    return check


def _parsed_text(parse: Callable[[str], Any] | None, value: Any) -> str | None:
    """A text setting: a string its argparse type accepts."""
    if not isinstance(value, str):
        return f"expected text, got {value!r}"
    try:
        if parse is not None:
            parse(value)
    except argparse.ArgumentTypeError as err:
        return str(err)
    return None


def setting(default: Any, help: str, *, group: str, resume: str, type: Callable[[str], Any] | None = None,
            choices: tuple[str, ...] | None = None, shown_default: str | None = None,
            metavar: str | None = None, text: bool = False) -> Any:
    """A dataclass field carrying its command-line declaration in ``metadata``, and the check
    of its values that follows from it (``_accepts``); ``text``: a string that ``type`` checks."""
    return declared(default, _accepts(default, type, choices, text), help=help, group=group, resume=resume,
                    type=type, choices=choices, shown_default=shown_default, metavar=metavar)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; stored as JSON next to it and inside each checkpoint."""

    # --- data: what is read, and how it becomes batches
    data: str | None = setting(
        None, "training data: a split root holding train/ and val/; or one data set (a folder of class "
        "folders, a label list, WebDataset shards) with --val-split or --val-data; on disk or at "
        "s3://bucket/prefix (docs/data.md)",
        group="data", resume=FREE, type=absolute_path, metavar="PATH",
        shown_default="required; with --resume, the checkpoint's")
    val_data: str | None = setting(
        None, "validation data of any kind --data takes, labelled by the training classes (matched by name)",
        group="data", resume=FREE, type=absolute_path, metavar="PATH", shown_default="--data's val/")
    val_split: float | None = setting(
        None, "hold out this fraction of each class of --data for validation, chosen from --seed (a resume "
        "holds out the same images)", group="data", resume=MATCH, type=argtypes.proper_fraction,
        metavar="FRACTION", shown_default="none")
    list_root: str | None = setting(
        None, "the folder the relative paths of a label list (--data, --val-data) start from", group="data",
        resume=FREE, type=absolute_path, metavar="DIR", shown_default="the list's folder")
    format: str = setting("auto", "data layout; auto detects shards vs folders", group="data",
                          resume=MATCH, choices=("auto", "folder", "wds"))
    on_bad_file: str = setting("error", "a file that fails verification stops the run or is left out",
                               group="data", resume=MATCH, choices=("error", "skip"))
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, "verification refuses an image whose header claims more "
                              "pixels (a decompression bomb guard); raise it for real images that large",
                              group="data", resume=MATCH, type=argtypes.positive_int)
    image_size: int = setting(224, "crop side fed to the model in training and evaluation, unless "
                              "--train-size, --eval-size or --progressive-resize set one",
                              group="data", resume=MATCH, type=argtypes.int_in(32, 4096))
    train_size: int | None = setting(None, "training crop side (FixRes, arXiv 1906.06423: train below the "
                                     "evaluation size)", group="data", resume=MATCH,
                                     type=argtypes.int_in(32, 4096), shown_default="--image-size")
    eval_size: int | None = setting(None, "evaluation crop side; the shorter side is resized to "
                                    "size*256/224 first, as torchvision's Resize + CenterCrop",
                                    group="data", resume=MATCH, type=argtypes.int_in(32, 4096),
                                    shown_default="--image-size, or END with --progressive-resize")
    progressive_resize: str | None = setting(
        None, "training size per epoch, as FFCV: START through epoch FROM_EPOCH, END from TO_EPOCH on, "
        "linear between in multiples of 32 (FROM:TO: 0 to the last epoch); the DALI graph is rebuilt "
        "when the size changes", group="data", resume=MATCH, type=schedule_text, text=True,
        metavar="START:END[:FROM_EPOCH:TO_EPOCH]", shown_default="off")
    batch_size: int = setting(64, "images per step per GPU/process", group="data", resume=MATCH,
                              type=argtypes.int_in(1, 65536))
    workers: int | None = setting(None, "DALI CPU threads per process", group="data", resume=FREE,
                                  type=argtypes.int_in(1, 1024),
                                  shown_default="gpu 4, cpu 8; at most cores / ranks on the node")
    tune: bool = setting(False, "before training, pick the DALI threads and prefetch depth (GPU: also the "
                         "hardware-decoder share and output dtype) by measuring them feeding this run's "
                         "model on rank 0, or reuse the saved tuning for this machine, data and model; "
                         "recorded in config.json and the checkpoints, which a resume reuses",
                         group="data", resume=MATCH, shown_default="off: --workers or the defaults")
    tune_seconds: float = setting(60.0, "time budget of --tune, model set-up included", group="data",
                                  resume=FREE, type=argtypes.positive_seconds)

    # --- run: how long, where the records go, how often they are written
    device: str = setting(default_device, "gpu: nvJPEG + GPU model; cpu: the same graph on CPU threads",
                          group="run", resume=MATCH, choices=("gpu", "cpu"),
                          shown_default=f"gpu when CUDA is available; here {default_device()}")
    epochs: int = setting(90, "epochs; the learning-rate schedule spans them", group="run", resume=MATCH,
                          type=argtypes.positive_int)
    max_steps: int | None = setting(None, "stop after this many optimizer steps in total; the schedule "
                                    "still spans --epochs", group="run", resume=FREE,
                                    type=argtypes.positive_int, shown_default="no cap")
    out: str = setting(None, "run directory for records and checkpoints, owned by one run "
                       "at a time", group="run", resume=FREE, metavar="DIR",
                       shown_default="runs/MODEL; with --resume, the checkpoint's run directory")
    resume: str | None = setting(None, "continue the run saved in this checkpoint (or RUN_DIR, meaning "
                                 "RUN_DIR/checkpoints/last.pt); its settings and data path come with "
                                 "it", group="run", resume=INVOCATION, metavar="CKPT",
                                 shown_default="none, a new run")
    overwrite: bool = setting(False, "start a new run in an --out that holds an earlier one, deleting "
                              "its records and checkpoints", group="run", resume=INVOCATION,
                              shown_default="off; an --out holding a run is refused")
    save_every: int = setting(500, "also checkpoint every N steps, besides each epoch end", group="run",
                              resume=FREE, type=argtypes.positive_int)
    seed: int = setting(0, "random seed (initial weights, sample order, augmentation, dropout)",
                        group="run", resume=MATCH, type=argtypes.seed)
    log_every: int = setting(10, "steps between CSV/TensorBoard step records and progress lines",
                             group="run", resume=FREE, type=argtypes.positive_int)
    test_only: bool = setting(False, "evaluate --resume CKPT (or --weights FILE) on the val split of "
                              "--data and exit, as python -m train eval does", group="run",
                              resume=INVOCATION, shown_default="off, train")

    # --- model: which network, from which weights
    model: str = setting(DEFAULT_MODEL, "torchvision classification model by builder name (resnet50, "
                         "mobilenet_v3_large, vit_b_16, ...), randomly initialised; GoogLeNet trains with "
                         "its auxiliary heads, the others without", group="model", resume=MATCH,
                         type=model_name, text=True, metavar="NAME")
    weights: str | None = setting(None, "initial weights: a state_dict file or a checkpoint (python -m "
                                  "train's, torchvision reference's), loaded strictly; read, never "
                                  "downloaded", group="model", resume=MATCH, type=absolute_path,
                                  metavar="FILE", shown_default="random initialisation")
    finetune: bool = setting(False, "with --weights: start the classifier afresh for this data's class "
                             "count; every other tensor still loads strictly", group="model",
                             resume=MATCH, shown_default="off")

    # --- optimization: the recipe (every one of these shapes the run, so a resume keeps them)
    lr: float = setting(0.1, "learning rate per 256 images; scaled by global batch / 256",
                        group="optimization", resume=MATCH, type=argtypes.non_negative_float)
    opt: str = setting("sgd", "optimizer: sgd, adamw (torch's), lamb or lars (train.optim, following "
                       "timm's)", group="optimization", resume=MATCH, choices=OPTIMIZERS)
    momentum: float = setting(0.9, "SGD and LARS momentum", group="optimization", resume=MATCH,
                              type=argtypes.fraction)
    weight_decay: float = setting(1e-4, "weight decay", group="optimization", resume=MATCH,
                                  type=argtypes.non_negative_float)
    no_decay_norm_bias: bool = setting(False, "no weight decay on BatchNorm weights and biases",
                                       group="optimization", resume=MATCH, shown_default="decay all")
    warmup_epochs: float = setting(2.0, "linear warm-up length in epochs", group="optimization",
                                   resume=MATCH, type=argtypes.non_negative_float)
    schedule: str = setting("cosine", "after warm-up: cosine to 0, or x0.1 every --step-epochs",
                            group="optimization", resume=MATCH, choices=("cosine", "step"))
    step_epochs: int = setting(30, "epochs between x0.1 decays for --schedule step", group="optimization",
                               resume=MATCH, type=argtypes.positive_int)
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing", group="optimization",
                                     resume=MATCH, type=argtypes.fraction)
    clip_grad: float | None = setting(None, "clip the gradients' global L2 norm to this before each "
                                      "optimizer step", group="optimization", resume=MATCH,
                                      type=argtypes.positive_float, metavar="NORM", shown_default="off")
    accum_steps: int = setting(1, "batches of --batch-size per optimizer step (gradient accumulation): "
                               "the effective batch, and the learning rate, grow by this factor",
                               group="optimization", resume=MATCH, type=argtypes.int_in(1, 4096))
    amp: str = setting("bf16", "mixed precision on the GPU; fp16 uses a gradient scaler; ignored on CPU",
                       group="optimization", resume=MATCH, choices=("bf16", "fp16", "off"))
    compile: bool = setting(False, "torch.compile the model", group="optimization", resume=FREE,
                            shown_default="off")

    # --- augmentation policy: in the DALI train graph after crop, resize and flip (GPU or CPU)
    augment: str = setting("basic", "policy after the random-resized crop and flip: basic (none), "
                           "randaugment, trivialaugment (wide) or autoaugment (ImageNet), as torchvision "
                           "defines them", group="augmentation", resume=MATCH, choices=AUGMENTS)
    augment_ops: int = setting(2, "randaugment: operations per image", group="augmentation",
                               resume=MATCH, type=argtypes.int_in(1, 16))
    augment_magnitude: int = setting(9, "randaugment: magnitude bin of every operation, 0 .. "
                                     "--augment-magnitude-bins - 1", group="augmentation", resume=MATCH,
                                     type=argtypes.int_in(0, 255))
    augment_magnitude_bins: int = setting(31, "randaugment, trivialaugment: bins each operation's range "
                                          "is divided into", group="augmentation", resume=MATCH,
                                          type=argtypes.int_in(2, 256))
    random_erase: float = setting(0.0, "probability of torchvision's RandomErasing per image (a box of "
                                  "2-33 %% of the area, aspect 0.3-3.3, set to 0 after normalization), "
                                  "in the DALI graph on its device", group="augmentation", resume=MATCH,
                                  type=probability, metavar="P", shown_default="0, off")

    # --- batch mixing: applied to each training batch after the loader; evaluation is never mixed
    mixup: float = setting(0.0, "mixup: blend each batch with itself in reverse order, lambda ~ "
                           "Beta(ALPHA, ALPHA); 0 turns it off", group="mixup and cutmix", resume=MATCH,
                           type=argtypes.non_negative_float, metavar="ALPHA", shown_default="0, off")
    cutmix: float = setting(0.0, "cutmix: paste a box of the reversed batch with area 1 - lambda, "
                            "lambda ~ Beta(ALPHA, ALPHA); 0 turns it off", group="mixup and cutmix",
                            resume=MATCH, type=argtypes.non_negative_float, metavar="ALPHA",
                            shown_default="0, off")
    mix_switch_prob: float = setting(0.5, "with both --mixup and --cutmix on: probability that a batch "
                                     "gets cutmix rather than mixup", group="mixup and cutmix",
                                     resume=MATCH, type=probability, metavar="P")
    mix_prob: float = setting(1.0, "probability that a batch is mixed at all, when --mixup or --cutmix is on",
                              group="mixup and cutmix", resume=MATCH, type=probability, metavar="P")

    # --- weight averaging: an EMA of the weights, evaluated each epoch beside them
    ema_decay: float = setting(0.0, "keep an exponential moving average of the weights with this decay "
                               "per optimizer step (e.g. 0.9998); 0 turns it off", group="weight EMA",
                               resume=MATCH, type=argtypes.fraction, metavar="D", shown_default="0, off")
    ema_every: int = setting(1, "update the EMA every N optimizer steps, with decay**N (same horizon, "
                             "less work)", group="weight EMA", resume=MATCH, type=argtypes.positive_int)
    ema_warmup: bool = setting(False, "ramp the EMA decay up as min(D, (1+t)/(10+t)) at step t, so "
                               "early averages forget the initial weights", group="weight EMA",
                               resume=MATCH, shown_default="off")

    def __post_init__(self) -> None:
        """The one place values are checked, with the same rules as the command line."""
        if self.out is None:  # frozen: the default that follows --model is set once, here
            object.__setattr__(self, "out", f"runs/{self.model}")
        check_fields(self, lambda name, problem: ConfigError(f"{flag_of(name)}: {problem}"))
        if self.data is None and self.resume is None:
            raise ConfigError("--data is required (or --resume CKPT to continue a saved run)")
        self._check_model_settings()
        self._check_sizes()
        if self.augment_magnitude >= self.augment_magnitude_bins:
            raise ConfigError(f"--augment-magnitude {self.augment_magnitude} must be below "
                              f"--augment-magnitude-bins {self.augment_magnitude_bins}")
        if self.val_data is not None and self.val_split is not None:
            raise ConfigError("--val-data and --val-split both name the validation data; pass one of them")
        if self.tune and self.workers is not None:
            raise ConfigError("--workers sets the DALI threads and --tune picks them; pass one of them")
        if self.overwrite and self.resume is not None:
            raise ConfigError("--overwrite starts a new run and --resume continues one; pass one of them")

    def _check_model_settings(self) -> None:
        if self.finetune and self.weights is None:
            raise ConfigError("--finetune starts the classifier of --weights FILE afresh; pass --weights too")
        if self.test_only and self.resume is None and self.weights is None:
            raise ConfigError("--test-only evaluates a checkpoint: pass --resume CKPT (or --weights FILE)")

    def _check_sizes(self) -> None:
        if self.progressive_resize is not None:
            if self.train_size is not None:
                raise ConfigError("--train-size and --progressive-resize both set the training size; "
                                  "pass one of them")
            _, last = self.resize_schedule.ramp(self.epochs)
            if last >= self.epochs:
                raise ConfigError(f"--progressive-resize {self.progressive_resize}: TO_EPOCH {last} is not "
                                  f"an epoch of --epochs {self.epochs} (0 .. {self.epochs - 1})")
        fixed = fixed_size_argument(self.model)
        one_size = self.progressive_resize is None and self.train_crop_at(0) == self.eval_crop
        if fixed is not None and not one_size:
            raise ConfigError(f"--model {self.model} is built for one input size ({fixed}): train and "
                              "evaluate at one size (--image-size N), without --progressive-resize")
        if fixed is not None and self.tune and self.eval_crop != 224:
            # The tuner (dali_pipelines.tune) builds torchvision's model with its default input size.
            raise ConfigError(f"--tune scores the loader by --model {self.model} built for 224 px input: "
                              f"pass --image-size 224, or leave --tune out at {self.eval_crop} px")

    @property
    def resize_schedule(self) -> ResizeSchedule:
        """--progressive-resize parsed (valid: the field's check ran)."""
        assert self.progressive_resize is not None
        return ResizeSchedule.parse(self.progressive_resize)

    def train_crop_at(self, epoch: int) -> int:
        """Training crop side in 0-based ``epoch``: --progressive-resize's, else --train-size, else
        --image-size."""
        if self.progressive_resize is not None:
            return self.resize_schedule.size_at(epoch, self.epochs)
        return self.image_size if self.train_size is None else self.train_size

    @property
    def eval_crop(self) -> int:
        """Evaluation crop side: --eval-size, else END of --progressive-resize, else --image-size."""
        if self.eval_size is not None:
            return self.eval_size
        if self.progressive_resize is not None:
            return self.resize_schedule.end
        return self.image_size

    def scaled_lr(self, world_size: int) -> float:
        """Linear scaling rule (Goyal et al. 2017): lr x global batch / 256, the global batch being
        what one optimizer step sees (--accum-steps batches on every rank)."""
        return self.lr * self.global_batch(world_size) / REFERENCE_BATCH

    def global_batch(self, world_size: int) -> int:
        """Images per optimizer step over all ranks."""
        return self.batch_size * self.accum_steps * world_size

    @property
    def mixing(self) -> bool:
        """Whether batches are mixed (mixup, cutmix or both)."""
        return self.mixup > 0 or self.cutmix > 0

    @property
    def resize_size(self) -> int:
        """Eval resize keeps ImageNet's 256/224 ratio for any evaluation size."""
        return resize_for(self.eval_crop)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """Autocast dtype on the GPU; None for full precision (always on CPU)."""
        if self.device != "gpu" or self.amp == "off":
            return None
        return torch.bfloat16 if self.amp == "bf16" else torch.float16

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON and checkpoints (weights_only-loadable types only)."""
        return dataclasses.asdict(self)

    def save(self, path: Path, **derived: Any) -> None:
        """Write the config plus derived values (world size, scaled lr, ...) as JSON."""
        write_json_atomic(path, {**self.to_dict(), **derived}, indent=2)


def resize_for(crop: int) -> int:
    """The shorter side an image is resized to before a center crop of ``crop`` (ImageNet's 256/224)."""
    return round(crop * 256 / 224)


def flag_of(name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def names_with_rule(rule: str) -> tuple[str, ...]:
    """The settings a resume treats by ``rule`` (MATCH, FREE or INVOCATION)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resume"] == rule)


def _metavar(spec: dataclasses.Field) -> str | None:
    """``N`` for counts, ``X`` for real numbers; choices show themselves."""
    if spec.metadata["choices"] is not None:
        return None
    return "N" if str(spec.type).startswith("int") else "X"


def _help_text(spec: dataclasses.Field) -> str:
    meta = spec.metadata
    shown = meta["shown_default"]
    if shown is None:
        shown = spec.default if not isinstance(spec.default, float) else f"{spec.default:g}"
    return f"{meta['help']} (default: {shown})"


_EPILOG = """\
examples:
  python -m train --data data/sample --epochs 1 --max-steps 30 --image-size 112 --out runs/demo
  python -m train --resume runs/demo/checkpoints/last.pt          # continue where it stopped
  python -m train --resume runs/demo --max-steps 60               # ... and train on to step 60
  torchrun --standalone --nproc_per_node 8 -m train --data /data/imagenet --out runs/in1k
  python -m train --data DIR --model resnet50 --opt lamb --lr 0.005 --progressive-resize 160:192
  python -m train --data DIR --model resnet50 --weights r50.pth --finetune --lr 0.01
  python -m train eval runs/demo/checkpoints/best.pt --data data/sample   # top-1/5, per class
  python -m train export runs/demo/checkpoints/best.pt runs/demo/export   # weights + TorchScript

with --resume, these may differ from the saved run: {free}.
The others decide the sample order, schedule or numerics and must match it.
"""


def get_args_parser() -> argparse.ArgumentParser:
    """The training parser, built from ``TrainConfig``'s fields; reusable (e.g. by a sweep script).

    Defaults are not filled in by argparse (``SUPPRESS``): the namespace holds only the flags
    given, so a resumed run can tell them from the checkpoint's values.
    """
    parser = argparse.ArgumentParser(
        prog="python -m train", argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a torchvision classifier (GoogLeNet with auxiliary heads by default) from DALI "
        "pipelines, on the GPU or the CPU. Under torchrun every rank reads its own shard. Sub-commands: "
        "python -m train eval CKPT, python -m train export CKPT OUT (each with --help).",
        epilog=_EPILOG.format(free=", ".join(flag_of(n) for n in names_with_rule(FREE))),
    )
    groups: dict[str, Any] = {}
    for spec in dataclasses.fields(TrainConfig):
        meta = spec.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        kwargs: dict[str, Any] = {"help": _help_text(spec), "dest": spec.name}
        if isinstance(spec.default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=meta["type"], choices=meta["choices"],
                          metavar=meta["metavar"] or _metavar(spec))
        groups[meta["group"]].add_argument(flag_of(spec.name), **kwargs)
    return parser
