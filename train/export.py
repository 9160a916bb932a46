"""``python -m train export CKPT OUT``: a checkpoint's model for inference, without its optimizer
state: ``weights.pt`` (a plain state_dict: the EMA's weights when the run kept one), ``model.ts``
(TorchScript, torch alone runs it, from Python or C++) or ``model.onnx`` (ONNX, needs the
``export`` extra: onnx and onnxscript; onnxruntime to check it), and ``model.json`` (what the
model expects: input size, normalization, class names).

Input of the exported model: float32 NCHW RGB images, normalized with the ImageNet mean and std,
of the checkpoint's evaluation size (torchvision's ``Resize(size*256/224)`` + ``CenterCrop(size)``
before it); output: the main head's logits. Each export is checked against the checkpoint's
model in PyTorch on a batch before it is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dali_pipelines._util import argtypes
from dali_pipelines._util.atomic import write_atomic, write_json_atomic
from dali_pipelines.config import IMAGENET_MEAN, IMAGENET_STD
from train.checkpoint import save_atomic
from train.config import ConfigError, absolute_path, resize_for
from train.models import inference_state_dict
from train.trained import TrainedModel, load_trained

_logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}
CHECK_BATCH = 2  # images of the export-time check
TOLERANCE = 1e-4  # largest |logit difference| accepted, relative to the logits' scale (fp32 reordering)


class ExportCheckError(ValueError):
    """The exported model's logits differ from the checkpoint's beyond rounding."""


def onnx_missing() -> list[str]:
    """The packages ONNX export needs that are not installed."""
    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]


def export_model(trained: TrainedModel, out: Path, *, fmt: str, size: int | None = None) -> dict[str, Any]:
    """Write weights.pt, the ``fmt`` model and model.json into ``out``; returns model.json's content."""
    size = size or trained.cfg.eval_crop
    model = trained.module(size)
    example = torch.randn(CHECK_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    save_atomic(inference_state_dict(trained.name, trained.state), out / "weights.pt")
    path = out / FILES[fmt]
    difference: float | None
    if fmt == "torchscript":
        write_atomic(path, _torchscript(model, example))
        difference = _check(model, example, torch.jit.load(str(path)))
    else:
        write_atomic(path, _onnx(model, example))
        difference = _check_onnx(model, example, path)
    about = {
        "model": trained.name, "num_classes": len(trained.classes), "classes": list(trained.classes),
        "weights": trained.weights, "checkpoint": str(trained.path), "run_id": trained.run_id,
        "step": trained.step, "epoch": trained.epoch, "format": fmt, "file": path.name,
        "input": {"layout": "NCHW", "dtype": "float32", "channels": "RGB", "height": size, "width": size,
                  "resize_shorter_side": resize_for(size), "center_crop": size, "scale": "pixel / 255",
                  "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "output": "logits of the main head, one per class",
        "max_abs_logit_difference": difference,
    }
    write_json_atomic(out / "model.json", about, indent=2)
    checked = ("not checked: onnxruntime is not installed" if difference is None else
               f"largest logit difference to the checkpoint's model {difference:.2g}")
    print(f"exported {trained.name} ({trained.weights} weights, step {trained.step}) to {out}: weights.pt, "
          f"{path.name} ({checked}), model.json; input {size}x{size}", flush=True)
    return about


def _torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model traced in eval mode (every torchvision classifier traces; scripting would keep
    GoogLeNet's named-tuple output)."""
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)  # checked below, on its own file
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """torch.export-based ONNX (torch's default exporter), the batch dimension dynamic."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    assert program is not None
    return program.model_proto.SerializeToString()  # one file: weights inline (models under 2 GB)


def _check(model: nn.Module, example: torch.Tensor, exported: Any) -> float:
    """Largest |logit difference| between ``exported`` and ``model`` on ``example``; raises past
    TOLERANCE (scaled by the logits' magnitude)."""
    with torch.no_grad():
        expected = model(example)
        got = exported(example)
    return _difference(expected, got)


def _check_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> float | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(example)
    got = torch.from_numpy(session.run(None, {"images": example.numpy()})[0])
    return _difference(expected, got)


def _difference(expected: torch.Tensor, got: torch.Tensor) -> float:
    difference = float((expected - got).abs().max())
    if difference > TOLERANCE * max(1.0, float(expected.abs().max())):
        raise ExportCheckError(f"the exported model's logits differ from the checkpoint's by "
                               f"{difference:.3g}; the export is not usable")
    return difference


def add_export_command(commands: Any) -> None:
    """``export``'s parser under ``python -m train``'s sub-commands."""
    parser = commands.add_parser(
        "export", help="write a checkpoint's model for inference: weights, TorchScript or ONNX",
        description=__doc__.split("\n\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m train export runs/demo runs/demo/export\n"
               "  python -m train export runs/demo/checkpoints/last.pt out --format onnx --raw")
    parser.add_argument("checkpoint", type=absolute_path, metavar="CKPT",
                        help="a checkpoint file, or a run directory (its checkpoints/best.pt)")
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="folder for weights.pt, the model and model.json")
    parser.add_argument("--format", default="torchscript", choices=FORMATS,
                        help="torchscript (torch alone) or onnx (the export extra) (default: torchscript)")
    parser.add_argument("--size", type=argtypes.int_in(32, 4096), metavar="N",
                        help="input side of the exported model (default: the run's evaluation size)")
    parser.add_argument("--raw", action="store_true",
                        help="the raw weights even when the run kept an EMA (default: the EMA's when kept)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Carry out ``python -m train export``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("python -m train export runs in one process; start it without torchrun")
    if args.format == "onnx" and onnx_missing():
        raise ConfigError(f"--format onnx needs {' and '.join(onnx_missing())}: "
                          "pip install 'dali-pipelines[export]'")
    for name in ("onnx_ir", "onnxscript"):  # their passes log each step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    export_model(load_trained(Path(args.checkpoint), raw=args.raw), args.out, fmt=args.format, size=args.size)
    return 0
