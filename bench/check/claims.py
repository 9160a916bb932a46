"""The project's targets for the GPU it is proven on, against what a check measured.

The targets are for an H200 with 16 cores reading the sample set; on another machine they are a
reference, not a verdict. Every ratio is between figures of the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TARGETS_FOR = "an H200 with 16 cores reading the sample set"
DATALOADERS = ("torch-pil", "torch-tv")


def _rate(summary: dict[str, Any], backend: str, workload: str) -> float | None:
    return summary.get("throughput", {}).get(backend, {}).get(workload)


def _over(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def _best_dataloader_aug(summary: dict[str, Any]) -> float | None:
    rates = [r for b in DATALOADERS if (r := _rate(summary, b, "train-aug"))]
    return max(rates, default=None)


def _e2e_efficiency(summary: dict[str, Any], model: str) -> float | None:
    return summary.get("e2e_by_model", {}).get(model, {}).get("efficiency", {}).get("dali-gpu")


@dataclass(frozen=True)
class Target:
    """One claim: the figure it reads from a run's summary and the least value it promises."""

    claim: str
    value: Callable[[dict[str, Any]], float | None]
    at_least: float
    stretch: float | None = None
    unit: str = "x"


TARGETS = (
    Target("dali-gpu train img/s over dali-ref's", lambda s: _over(_rate(s, "dali-gpu", "train"),
                                                                   _rate(s, "dali-ref", "train")), 1.1),
    Target("dali-gpu train img/s", lambda s: _rate(s, "dali-gpu", "train"), 18_000, 20_000, unit="img/s"),
    Target("dali-gpu train img/s over torch-pil's", lambda s: _over(_rate(s, "dali-gpu", "train"),
                                                                    _rate(s, "torch-pil", "train")), 10),
    Target("GoogLeNet e2e efficiency fed by dali-gpu", lambda s: _e2e_efficiency(s, "googlenet"), 0.95,
           unit=""),
    Target("ResNet-50 e2e efficiency fed by dali-gpu", lambda s: _e2e_efficiency(s, "resnet50"), 0.95,
           unit=""),
    Target("dali-gpu train-aug img/s over its own train",
           lambda s: s.get("train_aug_vs_train", {}).get("dali-gpu"), 0.8),
    Target("dali-gpu train-aug img/s over the faster DataLoader's (torch-pil, torch-tv)",
           lambda s: _over(_rate(s, "dali-gpu", "train-aug"), _best_dataloader_aug(s)), 15),
)


def verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and "met", "met (stretch too)", "below" or "not measured"."""
    out = []
    for t in TARGETS:
        value = t.value(summary)
        if value is None:
            verdict = "not measured"
        elif value < t.at_least:
            verdict = "below"
        else:
            verdict = "met (stretch too)" if t.stretch is not None and value >= t.stretch else "met"
        out.append({"claim": t.claim, "value": value, "at_least": t.at_least, "stretch": t.stretch,
                    "unit": t.unit, "verdict": verdict})
    return out


def _number(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "img/s" else f"{value:.2f}{unit}"


def claim_lines(found: list[dict[str, Any]]) -> list[str]:
    """The verdicts as a Markdown table."""
    rows = []
    for v in found:
        measured = "-" if v["value"] is None else _number(v["value"], v["unit"])
        target = f">= {_number(v['at_least'], v['unit'])}"
        if v["stretch"] is not None:
            target += f" (stretch {_number(v['stretch'], v['unit'])})"
        rows.append(f"| {v['claim']} | {measured} | {target} | {v['verdict']} |")
    return [f"**Targets** (the project's, for {TARGETS_FOR}; ratios within this run)", "",
            "| claim | measured | target | verdict |", "|---|---|---|---|", *rows, ""]
