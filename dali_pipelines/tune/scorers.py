"""What a point of the search is scored by: a real DaliLoader built with its settings, timed alone or
feeding a training step of a torchvision model (images/s, higher is better)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dali_pipelines.config import PipelineConfig
from dali_pipelines.loader import make_loader
from dali_pipelines.sources import DataSource
from dali_pipelines.tune.measure import MeasureSpec, endless, measure_images_per_s
from dali_pipelines.tune.search import Point, Score

_logger = logging.getLogger(__name__)

AMP_MODES = ("bf16", "fp16", "off")
# Models whose train-mode output carries auxiliary heads, and the weight of their losses:
# GoogLeNet's paper (Szegedy et al. 2015) adds them at 0.3, torchvision's reference Inception v3 at 0.4.
AUX_WEIGHTS = {"googlenet": 0.3, "inception_v3": 0.4}
# The architecture training builds: aux heads on, our own normalization (no transform_input). The
# weights' values do not change a step's speed, so PyTorch's default initialization is kept:
# torchvision's truncated-normal one (init_weights=True) costs seconds on a CPU.
_BUILD_ARGS: dict[str, dict[str, Any]] = {
    name: {"aux_logits": True, "init_weights": False, "transform_input": False} for name in AUX_WEIGHTS}


def check_model_name(name: str) -> None:
    """Raise, naming the fix, unless ``name`` is a torchvision classification model builder."""
    import torchvision  # its models load only when a model is named: the CLI's other commands stay quick

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"model {name!r} is not a torchvision classification model; use a builder name "
                         f"such as googlenet, resnet50 or mobilenet_v3_small ({len(known)} in "
                         "torchvision.models.list_models(module=torchvision.models))")


def build_classifier(name: str, num_classes: int) -> nn.Module:
    """torchvision's ``name`` with random weights (nothing downloaded) and ``num_classes`` outputs."""
    import torchvision

    check_model_name(name)
    extra = _BUILD_ARGS.get(name, {})
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)


def classifier_loss(outputs: Any, targets: torch.Tensor, criterion: nn.Module,
                    aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the logits plus ``aux_weight`` times each auxiliary head's (train mode)."""
    if isinstance(outputs, torch.Tensor):
        return criterion(outputs, targets)
    heads = outputs._asdict()  # GoogLeNetOutputs / InceptionOutputs are named tuples
    aux = [criterion(logits, targets) for name, logits in heads.items()
           if name != "logits" and logits is not None]
    return criterion(heads["logits"], targets) + aux_weight * sum(aux)


class TrainingStep:
    """One SGD step of a torchvision classifier per batch, laid out as training lays it out.

    On the GPU: channels_last weights, NHWC batches viewed as channels_last NCHW (no copy),
    autocast in ``amp`` (fp16 with a gradient scaler), no host sync per step. On the CPU: full
    precision in NCHW, as ``train`` runs there.
    """

    def __init__(self, model: str, num_classes: int, device: torch.device, *, layout: str,
                 amp: str = "bf16") -> None:
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {amp!r}")
        self.name, self.device, self.layout = model, device, layout
        self.cuda = device.type == "cuda"
        self.amp = amp if self.cuda else "off"
        with torch.random.fork_rng(devices=[]):  # the same weights every time; the caller's RNG untouched
            torch.manual_seed(0)
            self.model = build_classifier(model, num_classes).to(device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.aux_weight = AUX_WEIGHTS.get(model, 0.0)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        inputs = images.permute(0, 3, 1, 2) if self.layout == "NHWC" else images
        self.optimizer.zero_grad(set_to_none=True)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "off"):
            loss = classifier_loss(self.model(inputs), labels, self.criterion, self.aux_weight)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


class LoaderScorer:
    """Scores a point by images/s of a DaliLoader built from ``base`` with the point's settings,
    alone or feeding ``step``; the loader is built, warmed up, timed and closed at every point."""

    def __init__(self, source: DataSource, base: PipelineConfig, *, step: TrainingStep | None = None,
                 train: bool = True, spec: MeasureSpec | None = None) -> None:
        self.source, self.base, self.step, self.train = source, base, step, train
        self.spec = spec or MeasureSpec()
        self.cuda = base.device == "gpu"

    @property
    def metric(self) -> str:
        """What the score counts, for tables and records."""
        if self.step is None:
            return "images/s of the loader alone"
        return f"images/s of {self.step.name} training steps fed by the loader"

    def __call__(self, point: Point) -> Score:
        cfg = self.base.replace(**point)
        began = time.perf_counter()
        loader = make_loader(self.source, cfg, train=self.train)
        build_s = time.perf_counter() - began
        batches = endless(loader)
        try:
            with self._context():
                score = measure_images_per_s(batches, self.spec, consume=self.step, sync=self._sync)
        finally:
            batches.close()  # the suspended epoch holds DALI's iterator: let go of it before the next point
            loader.close()
        _logger.debug("%s: %.1f %s", point, score.value, self.metric)
        return Score(score.value, score.low, score.high, {"build_s": round(build_s, 3), **score.detail})

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.base.device_id)

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """On the GPU with a model: the step on a CUDA stream of higher priority than DALI's kernels,
        as ``train`` runs it (DALI's iterator copies its outputs on the current stream, so no
        cross-stream sync is needed), and cuDNN picking its fastest kernels for the fixed shapes."""
        if not (self.cuda and self.step is not None):
            yield
            return
        device = torch.device("cuda", self.base.device_id)
        stream = torch.cuda.Stream(device, priority=-1)  # lower is higher; clamped to the device's range
        stream.wait_stream(torch.cuda.current_stream(device))
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            with torch.cuda.stream(stream):
                yield
        finally:
            torch.backends.cudnn.benchmark = benchmark
            torch.cuda.current_stream(device).wait_stream(stream)
