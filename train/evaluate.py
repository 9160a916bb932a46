"""``python -m train eval CKPT --data DIR``: a checkpoint's model on a data set's val split, without
training: top-1, top-5 and loss as the run's epochs.csv reports them, each class's accuracy
(``per_class.csv``), and the confusion matrix (``confusion.csv``, and ``confusion.png`` to read).

The images go through the run's evaluation graph (torchvision's Resize + CenterCrop, exactly) at the
run's evaluation size unless --eval-size asks for another (FixRes, arXiv 1906.06423: a model trained
at a low size is best evaluated at a larger one). One process; the EMA's weights when the run kept
them.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dali_pipelines import DataSource, PipelineConfig, make_loader, open_source, open_train_val, prepare_data
from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import atomic_write, write_atomic, write_json_atomic
from dali_pipelines.config import default_cache_dir
from dali_pipelines.verify import DEFAULT_MAX_PIXELS
from train.config import ConfigError, TrainConfig, absolute_path, default_device, resize_for
from train.trained import TrainedModel, load_trained

_logger = logging.getLogger(__name__)

MATRIX_CLASSES = 40  # at most this many rows and columns in confusion.png (the most confused classes)
ANNOTATE_UP_TO = 25  # counts are written in the cells of matrices up to this size


@dataclass
class Scores:
    """Sums over the evaluated images: loss, top-1 and top-5 hits, and the confusion matrix
    (rows: true class, columns: predicted), with top-5 hits per class."""

    num_classes: int
    images: int = 0
    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    confusion: torch.Tensor | None = None
    class_top5: torch.Tensor | None = None

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch; the sums stay on the host (eval is not the hot loop: one copy per batch)."""
        logits = logits.float()
        k = self.num_classes
        top = logits.topk(min(5, k), dim=1).indices
        hits5 = (top == labels[:, None]).any(dim=1)
        pairs = torch.bincount(labels * k + top[:, 0], minlength=k * k).reshape(k, k).cpu()
        per_class5 = torch.bincount(labels[hits5], minlength=k).cpu()
        self.confusion = pairs if self.confusion is None else self.confusion + pairs
        self.class_top5 = per_class5 if self.class_top5 is None else self.class_top5 + per_class5
        self.loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        self.top1 += int((top[:, 0] == labels).sum())
        self.top5 += int(hits5.sum())
        self.images += labels.shape[0]

    def summary(self) -> dict[str, float]:
        count = max(self.images, 1)
        return {"images": self.images, "loss": self.loss_sum / count, "top1": self.top1 / count,
                "top5": self.top5 / count}


@torch.no_grad()
def score(model: nn.Module, loader: Any, num_classes: int, *, channels_last: bool,
          amp: torch.dtype | None) -> Scores:
    """``model`` over every batch of ``loader`` (NHWC batches viewed as channels_last NCHW when
    ``channels_last``), with autocast in ``amp`` on the GPU: the loss on fp32 logits, as training's
    evaluation computes it."""
    scores = Scores(num_classes)
    for images, labels in loader:
        inputs = images.permute(0, 3, 1, 2) if channels_last else images
        with torch.autocast(device_type=inputs.device.type, dtype=amp or torch.float32,
                            enabled=amp is not None):
            logits = model(inputs)
        scores.add(logits, labels)
    return scores


# --- outputs ------------------------------------------------------------------------------------


def write_outputs(scores: Scores, classes: tuple[str, ...], out: Path, about: dict[str, Any]) -> None:
    """summary.json, per_class.csv, confusion.csv and confusion.png in ``out``."""
    assert scores.confusion is not None and scores.class_top5 is not None
    write_json_atomic(out / "summary.json", {**about, **scores.summary()}, indent=2)
    confusion = scores.confusion
    with atomic_write(out / "per_class.csv", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "images", "top1", "top5", "most_confused_with", "confused_images"])
        for index, name in enumerate(classes):
            row = confusion[index]
            total = int(row.sum())
            errors = row.clone()
            errors[index] = 0
            worst = int(errors.argmax())
            writer.writerow([name, total, _ratio(int(row[index]), total),
                             _ratio(int(scores.class_top5[index]), total),
                             classes[worst] if errors[worst] > 0 else "", int(errors[worst])])
    with atomic_write(out / "confusion.csv", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, confusion.tolist(), strict=True):
            writer.writerow([name, *row])
    write_atomic(out / "confusion.png", confusion_png(confusion, classes, title=about.get("title", "")))


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.6f}" if whole else ""


def shown_classes(confusion: torch.Tensor, limit: int = MATRIX_CLASSES) -> list[int]:
    """All classes when there are at most ``limit``; else the ``limit`` with the most errors (as true
    or predicted class), in label order."""
    if confusion.shape[0] <= limit:
        return list(range(confusion.shape[0]))
    errors = confusion.sum(dim=0) + confusion.sum(dim=1) - 2 * confusion.diagonal()
    return sorted(errors.topk(limit).indices.tolist())


def confusion_png(confusion: torch.Tensor, classes: tuple[str, ...], *, title: str) -> bytes:
    """The confusion matrix as a PNG: rows the true class, shaded by the share of its images
    predicted as each column, counts written in the cells of small matrices; with more than
    MATRIX_CLASSES classes, the most confused ones."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt  # after use("Agg"), deliberately

    keep = shown_classes(confusion)
    sub = confusion[keep][:, keep].double()
    shares = sub / confusion[keep].sum(dim=1, keepdim=True).clamp(min=1).double()
    side = max(4.0, 0.32 * len(keep) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    names = [classes[i] for i in keep]
    ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(keep)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if len(keep) <= ANNOTATE_UP_TO:
        for row in range(len(keep)):
            for col in range(len(keep)):
                count = int(sub[row, col])
                if count:
                    ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                            color="white" if shares[row, col] > 0.5 else "black")
    shown = "" if len(keep) == len(classes) else f" ({len(keep)} most confused of {len(classes)} classes)"
    ax.set_title(f"{title}{shown}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's images")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


# --- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate, where, and where the files go."""

    data: str
    split: str = "val"
    device: str = "cpu"
    batch_size: int = 64
    workers: int | None = None
    eval_size: int | None = None
    on_bad_file: Literal["error", "skip"] = "error"
    out: Path | None = None


def evaluate_checkpoint(trained: TrainedModel, request: EvalRequest) -> dict[str, Any]:
    """Score ``trained`` on ``request``'s data and write the files; returns the summary."""
    source = eval_source(request, trained.classes, run=trained.cfg)
    size = request.eval_size or trained.cfg.eval_crop
    model = trained.module(size)
    out = request.out or trained.path.parent.parent / "eval" / f"{trained.path.stem}-{request.split}-{size}px"
    about = {"checkpoint": str(trained.path), "model": trained.name, "weights": trained.weights,
             "step": trained.step, "data": request.data, "split": request.split, "eval_size": size,
             "resize_size": resize_for(size),
             "title": f"{trained.name} ({trained.weights} weights, step {trained.step}), {request.split} "
                      f"at {size} px"}
    amp = _amp(trained.cfg.amp, request.device)
    return _run(model, source, request, size=size, classes=trained.classes, out=out, about=about, amp=amp)


def evaluate_weights(model: nn.Module, name: str, classes: tuple[str, ...], request: EvalRequest,
                     size: int) -> dict[str, Any]:
    """Score a model whose weights came from a --weights file (``python -m train --test-only``)."""
    source = eval_source(request, classes)
    out = request.out or Path("runs") / name / "eval" / f"weights-{request.split}-{size}px"
    about = {"model": name, "weights": "file", "data": request.data, "split": request.split,
             "eval_size": size, "resize_size": resize_for(size),
             "title": f"{name}, {request.split} at {size} px"}
    return _run(model, source, request, size=size, classes=classes, out=out, about=about, amp=None)


def eval_source(request: EvalRequest, classes: tuple[str, ...], *,
                run: TrainConfig | None = None) -> DataSource:
    """The images to score, verified: the run's own split of its own --data (its --val-data or
    --val-split hold-out too) when ``request.data`` is the run's; else ``request.data``'s split."""
    if run is not None and run.data is not None and request.data == run.data:
        both = open_train_val(run.data, val_data=run.val_data, val_split=run.val_split, seed=run.seed,
                              fmt=run.format, list_root=run.list_root)
        source = both.val if request.split == "val" else both.train
    else:
        source = open_source(request.data, split=request.split)
    assert source is not None  # open_train_val gives a val source unless asked not to
    if tuple(source.classes) != tuple(classes):
        raise ConfigError(f"--data {request.data}: its {request.split} split has {len(source.classes)} "
                          f"classes ({', '.join(source.classes[:4])}, ...), the model was trained on "
                          f"{len(classes)} ({', '.join(classes[:4])}, ...); pass the data it was trained on")
    # One bad JPEG would kill the graph; shards are checked against their recorded checksums.
    max_pixels = DEFAULT_MAX_PIXELS if run is None else run.max_pixels  # the run's bomb guard
    return prepare_data(source, on_bad_file=request.on_bad_file, cache_dir=default_cache_dir(),
                        max_pixels=max_pixels)


def _amp(amp: str, device: str) -> torch.dtype | None:
    """The run's autocast dtype, on the GPU; full precision on the CPU."""
    if device != "gpu" or amp == "off":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _run(model: nn.Module, source: DataSource, request: EvalRequest, *, size: int, classes: tuple[str, ...],
         out: Path, about: dict[str, Any], amp: torch.dtype | None) -> dict[str, Any]:
    """Score ``model`` on ``source`` at ``size``, write the files to ``out``, print one line."""
    gpu = request.device == "gpu"
    device = torch.device("cuda") if gpu else torch.device("cpu")
    model = model.to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    cfg = PipelineConfig(batch_size=request.batch_size, num_threads=request.workers, device=request.device,
                         crop_size=size, resize_size=resize_for(size), layout="NHWC" if gpu else "NCHW")
    loader = make_loader(source, cfg, train=False)
    try:
        scores = score(model, loader, len(classes), channels_last=gpu, amp=amp)
    finally:
        loader.close()
    write_outputs(scores, classes, out, about)
    summary = {**scores.summary(), "out": str(out)}
    print(f"{about['title']}: top-1 {summary['top1']:.4f}, top-5 {summary['top5']:.4f}, loss "
          f"{summary['loss']:.4f} over {summary['images']} images; per class and confusion matrix in {out}",
          flush=True)
    return summary


def add_eval_command(commands: Any) -> None:
    """``eval``'s parser under ``python -m train``'s sub-commands."""
    parser = commands.add_parser(
        "eval", help="evaluate a checkpoint on a data set's val split, without training",
        description=__doc__.split("\n\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m train eval runs/demo --data data/sample\n"
               "  python -m train eval runs/demo/checkpoints/last.pt --data data/sample --eval-size 160 "
               "--raw")
    parser.add_argument("checkpoint", type=absolute_path, metavar="CKPT",
                        help="a checkpoint file, or a run directory (its checkpoints/best.pt)")
    parser.add_argument("--data", type=absolute_path, metavar="PATH",
                        help="a split root holding the split to evaluate (default: the run's data, split "
                             "as the run split it: its val/, --val-data or --val-split hold-out)")
    parser.add_argument("--split", default="val", choices=("val", "train"), help="split (default: val)")
    parser.add_argument("--device", default=default_device(), choices=("gpu", "cpu"),
                        help="where to decode and run (default: gpu when CUDA is available; here "
                             f"{default_device()})")
    parser.add_argument("--batch-size", type=argtypes.int_in(1, 65536), metavar="N",
                        help="images per batch (default: the run's --batch-size)")
    parser.add_argument("--workers", type=argtypes.int_in(1, 1024), metavar="N",
                        help="DALI CPU threads (default: the device's default)")
    parser.add_argument("--eval-size", type=argtypes.int_in(32, 4096), metavar="N",
                        help="center-crop side; the shorter side is resized to N*256/224 first "
                             "(default: the run's evaluation size)")
    parser.add_argument("--raw", action="store_true",
                        help="the raw weights even when the run kept an EMA (default: the EMA's when kept)")
    parser.add_argument("--on-bad-file", default="error", choices=("error", "skip"),
                        help="a file that fails verification stops the evaluation or is left out "
                             "(default: error)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the files go (default: RUN_DIR/eval/<checkpoint>-<split>-<size>px)")
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Carry out ``python -m train eval``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("python -m train eval runs in one process; start it without torchrun")
    if args.device == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--device gpu needs a CUDA GPU and torch sees none; use --device cpu")
    trained = load_trained(Path(args.checkpoint), raw=args.raw)
    request = EvalRequest(data=args.data or trained.data, split=args.split, device=args.device,
                          batch_size=args.batch_size or trained.cfg.batch_size, workers=args.workers,
                          eval_size=args.eval_size, on_bad_file=args.on_bad_file, out=args.out)
    evaluate_checkpoint(trained, request)
    return 0
