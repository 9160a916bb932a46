"""The check's steps, declared in the order they run: adding a benchmark section is one entry.

A ``bench`` step names a section of ``bench.sweep`` with the backends and workloads it measures;
backends that are not registered in ``bench.backends`` (or cannot run on this machine) are left
out with the reason, and a section ``bench.sweep`` does not have is skipped with the reason, so
an entry can stand here before the branch that adds its section is merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StepKind = Literal["tests", "sample", "bench", "train"]

# The loaders the throughput claims compare, measured at --workers (the cores) each.
CLAIM_BACKENDS = ("dali-gpu", "dali-ref", "torchvision-gpu", "torch-pil", "torch-tv")
# Other projects' loaders, by the names their bench backends register.
PEER_BACKENDS = ("spdl", "torchcodec", "dali-proxy")


@dataclass(frozen=True)
class Step:
    """One step: what it runs, and how much it matters when the budget is short."""

    name: str
    kind: StepKind
    about: str  # one line for the plan
    section: str = ""  # bench: the bench.sweep section
    backends: tuple[str, ...] = ()  # bench: those this step measures, when they can run here
    workloads: tuple[str, ...] = ("train",)  # bench: what each backend does
    needs_gpu: bool = False
    keep: int = 0  # when the budget cannot hold every step, the lowest go first
    e2e_model: str = "googlenet"  # bench e2e, e2e-sweep: the model the step trains (bench --e2e-model)

    def __post_init__(self) -> None:
        if (self.kind == "bench") != bool(self.section):
            raise ValueError(f"step {self.name}: a bench step names its section, and only a bench step")


STEPS: tuple[Step, ...] = (
    Step("tests", "tests", "pytest -m gpu, bounded; failures recorded, not fatal (runs beside the sample)",
         needs_gpu=True, keep=5),
    Step("sample", "sample", "the sample photos made on every core, then verified", keep=100),
    Step("throughput", "bench", "img/s of the claims' loaders on train, train-aug and eval",
         section="throughput", backends=CLAIM_BACKENDS, workloads=("train", "train-aug", "eval"), keep=9),
    Step("peers", "bench", "img/s of other projects' loaders on train", section="throughput",
         backends=PEER_BACKENDS, keep=3),
    Step("hw-decoder", "bench", "dali-gpu train over hw_decoder_load", section="hw-decoder",
         backends=("dali-gpu",), needs_gpu=True, keep=4),
    Step("e2e", "bench", "GoogLeNet training steps fed by synthetic data, dali-gpu and dali-ref",
         section="e2e", backends=("dali-gpu", "dali-ref"), needs_gpu=True, keep=8),
    # The model of NVIDIA's published DALI training figures; its target is dali-gpu against synthetic.
    Step("e2e-resnet50", "bench", "ResNet-50 training steps fed by synthetic data and dali-gpu",
         section="e2e", backends=("dali-gpu",), needs_gpu=True, keep=7, e2e_model="resnet50"),
    Step("e2e-sweep", "bench", "e2e fed by dali-gpu over threads x hw_decoder_load x prefetch depth",
         section="e2e-sweep", backends=("dali-gpu",), needs_gpu=True, keep=2),
    # The loader tuner's bench section: measured here as soon as bench.sweep has it.
    Step("tune", "bench", "dali-gpu tuned on this machine against its defaults", section="tune",
         backends=("dali-gpu",), needs_gpu=True, keep=1),
    Step("train", "train", "python -m train --device gpu, a few epochs: img/s against synthetic, data wait",
         needs_gpu=True, keep=6),
)
