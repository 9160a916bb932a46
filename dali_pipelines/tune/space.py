"""Which loader settings the tuner searches, with which candidate values, for a device and a machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dali_pipelines.config import DTYPES, PipelineConfig
from dali_pipelines.tune.search import Dimension, SearchSpace

# Thread counts tried, capped at the cores this process may use: DALI's threads decode (CPU) or
# parse and launch (GPU) and compete with the training loop for the same cores, so more threads
# than cores adds contention, not work.
THREAD_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
PREFETCH_DEPTHS = (1, 2, 3, 4)  # batches DALI prepares ahead; each one more holds a batch of memory
# Share of images for the A100/H100/H200 hardware JPEG decoder; the rest go to CUDA cores.
HW_DECODER_LOADS = (0.0, 0.25, 0.5, 0.75, 1.0)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; a container's CPU set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pipeline_space(base: PipelineConfig, *, half_ok: bool = True, cores: int | None = None,
                   threads: Sequence[int] | None = None, prefetch: Sequence[int] | None = None,
                   hw_decoder_loads: Sequence[float] | None = None,
                   dtypes: Sequence[str] | None = None) -> SearchSpace:
    """The settings to search around ``base``, whose own values are the defaults (always included).

    Searched: ``num_threads`` and ``prefetch_queue_depth``; on the GPU also ``hw_decoder_load``
    and, when the consumer takes float16 input (``half_ok``: the loader alone, or a model under
    autocast), ``dtype``. Each sequence given replaces that dimension's candidates; every
    candidate is checked as ``PipelineConfig`` checks it, before anything runs.
    """
    gpu = base.device == "gpu"
    cores = cores or usable_cores()
    dims = [
        _dimension(base, "num_threads", threads, [n for n in THREAD_STEPS if n <= cores]),
        _dimension(base, "prefetch_queue_depth", prefetch, PREFETCH_DEPTHS),
    ]
    if gpu:
        dims.append(_dimension(base, "hw_decoder_load", hw_decoder_loads, HW_DECODER_LOADS))
        if half_ok:
            dims.append(_dimension(base, "dtype", dtypes, DTYPES))
        elif dtypes:
            raise ValueError("dtype is searched only when float16 batches are accepted: for the loader "
                             "alone, or a model under autocast (amp bf16 or fp16); drop the dtypes")
    else:
        for name, given in (("hw_decoder_load", hw_decoder_loads), ("dtype", dtypes)):
            if given:
                raise ValueError(f"{name} is searched on the GPU only (it does not change the CPU graph); "
                                 "drop it or use device 'gpu'")
    return SearchSpace(tuple(dims))


def _dimension(base: PipelineConfig, name: str, given: Sequence[Any] | None,
               candidates: Sequence[Any]) -> Dimension:
    """Candidates (given or standard) plus the base's own value, in order, each one valid."""
    default = getattr(base, name)
    values = list(dict.fromkeys(given)) if given else list(candidates)
    if default not in values:
        values.append(default)
    if name != "dtype":
        values.sort()
    for value in values:
        base.replace(**{name: value})  # PipelineConfig's check: the error names the field and range
    return Dimension(name, tuple(values), default)
