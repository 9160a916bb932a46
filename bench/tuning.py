"""The tune section: the tuner as shipped (hill climbing from the defaults within its default
budget) beside the exhaustive grid of the same space and beside the defaults; then those three
points measured again, in turn, by the same measurement, in the same process.

The loader is ``dali-cpu`` / ``dali-gpu``'s own config for the run's train workload and batch,
scored alone (what ``make_loader(..., num_threads="auto")`` looks up). Scores taken minutes apart
drift with the machine's load; the rounds in turn put the three points under the same drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.backends import RunSpec
from bench.backends.dali import config_for
from bench.records import TuneFigures
from dali_pipelines import DataSource, PipelineConfig
from dali_pipelines.tune import LoaderScorer, MeasureSpec, Score, SearchSpace, pipeline_space, tune
from dali_pipelines.tune.space import usable_cores
from dali_pipelines.tune.tuner import DEFAULT_SECONDS

HILL_S = DEFAULT_SECONDS  # the climb's budget: the tuner's default
# The grid's: room for every point of the space; the job's --timeout is the bound that applies.
GRID_S = 3600.0
ROUNDS = 3  # the three points measured again in turn, this many times each
# On the GPU the whole space (threads 1 .. cores, 4 depths, 5 decoder shares, 2 dtypes: 320 points
# on 16 cores) takes longer to grid than a GPU check has; the section climbs and grids this one.
GPU_THREADS = (2, 4, 8, 16)
GPU_PREFETCH = (1, 2, 3)
GPU_HW_DECODER_LOADS = (0.0, 0.5, 1.0)
QUICK_SPEC = MeasureSpec(warmup_s=0.5, repeat_s=0.5)  # --quick: half the tuner's default


def base_config(spec: RunSpec) -> PipelineConfig:
    """The loader tuned: this project's graph as the dali backend builds it for ``spec``."""
    return config_for(spec, spec.device)


def section_space(base: PipelineConfig) -> SearchSpace:
    """The space both searches cover: the tuner's own on the CPU, a narrower one on the GPU
    (``GPU_*``; float32 output, as the other sections measure)."""
    if base.device == "cpu":
        return pipeline_space(base)
    cores = usable_cores()
    return pipeline_space(base, threads=[n for n in GPU_THREADS if n <= cores], prefetch=GPU_PREFETCH,
                          hw_decoder_loads=GPU_HW_DECODER_LOADS, dtypes=["float32"])


def measure_spec(quick: bool) -> MeasureSpec:
    """How each point is measured: the tuner's default, or ``QUICK_SPEC`` with --quick."""
    return QUICK_SPEC if quick else MeasureSpec()


def expected_s(spec: RunSpec, measure: MeasureSpec) -> float:
    """What the section costs at least, for the plan: the climb's budget, every grid point and the
    rounds in turn, each scoring at its measurement's least (loader builds not counted)."""
    point = measure.warmup_s + measure.repeats * measure.repeat_s
    return HILL_S + point * section_space(base_config(spec)).size + point * 3 * ROUNDS


def run_tune_section(data: DataSource, spec: RunSpec, measure: MeasureSpec, *,
                     space: SearchSpace | None = None, hill_s: float = HILL_S,
                     rounds: int = ROUNDS) -> TuneFigures:
    """Climb (within ``hill_s``), grid, then the defaults, the climb's choice and the grid's best
    point ``rounds`` times in turn; over ``space`` (default: ``section_space``)."""
    base = base_config(spec)
    space = space or section_space(base)
    hill = tune(data, base, seconds=hill_s, method="hill", space=space, spec=measure)
    grid = tune(data, base, seconds=GRID_S, method="grid", space=space, spec=measure)
    points = {"defaults": hill.defaults, "tuned": hill.settings, "grid best": grid.best}
    return TuneFigures(space={d.name: list(d.values) for d in space.dimensions}, hill=hill.to_record(),
                       grid=grid.to_record(), points=points,
                       rates=in_turn(LoaderScorer(data, base, spec=measure), points, rounds))


def in_turn(score: Callable[[dict[str, Any]], Score], points: dict[str, dict[str, Any]],
            rounds: int) -> dict[str, list[float]]:
    """Each distinct point scored ``rounds`` times, one after the other in every round; names that
    share a point share its scores."""
    distinct: list[dict[str, Any]] = []
    for point in points.values():
        if point not in distinct:
            distinct.append(point)
    scores: list[list[float]] = [[] for _ in distinct]
    for _ in range(rounds):
        for index, point in enumerate(distinct):
            scores[index].append(round(score(point).value, 2))
    return {name: scores[distinct.index(point)] for name, point in points.items()}
