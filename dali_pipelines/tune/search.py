"""The search over a small discrete space: hill climbing from the defaults, or the whole grid.

Pure logic: a point is scored by a callable (higher is better) and time is read from a clock
given to the search, so the rules can be checked on a known surface with a fake clock.

The rules both searches keep:
- the defaults are scored first, always, even when the budget is smaller than one scoring;
- no point outside the space is ever scored, and no point is scored twice;
- another point is scored only while the time spent plus the dearest scoring so far fits the
  budget, so a search ends within it unless a single scoring runs longer than all before it;
- a point replaces the defaults (or the climb's current point) only when it scores more than
  ``1 + tolerance`` times as much: the defaults win ties, and noise alone does not move the choice.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Point = dict[str, Any]  # dimension name -> value
Clock = Callable[[], float]


@dataclass(frozen=True)
class Dimension:
    """One setting the search may change: its candidate values in order, and its default among them.

    "In order" matters to hill climbing: a point's neighbours are the values next to its own.
    """

    name: str
    values: tuple[Any, ...]
    default: Any

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"search dimension {self.name!r} has no values; give it at least its default")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"search dimension {self.name!r} repeats a value: {self.values!r}")
        if self.default not in self.values:
            raise ValueError(f"search dimension {self.name!r}: the default {self.default!r} is not among "
                             f"its values {self.values!r}; add it")

    def steps(self, value: Any) -> list[Any]:
        """The values next to ``value``: one step up, then one step down, where they exist."""
        at = self.values.index(value)
        return [self.values[i] for i in (at + 1, at - 1) if 0 <= i < len(self.values)]


@dataclass(frozen=True)
class SearchSpace:
    """The product of some dimensions; its default point takes every dimension's default."""

    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        names = [d.name for d in self.dimensions]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a search space needs one or more dimensions with distinct names, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def size(self) -> int:
        """Points in the whole grid."""
        count = 1
        for dim in self.dimensions:
            count *= len(dim.values)
        return count

    def defaults(self) -> Point:
        return {d.name: d.default for d in self.dimensions}

    def contains(self, point: Mapping[str, Any]) -> bool:
        return set(point) == set(self.names) and all(point[d.name] in d.values for d in self.dimensions)

    def grid(self) -> Iterator[Point]:
        """Every point once: the defaults first, then the product in dimension order."""
        first = self.defaults()
        yield first
        for values in itertools.product(*(d.values for d in self.dimensions)):
            point = dict(zip(self.names, values, strict=True))
            if point != first:
                yield point

    def neighbours(self, point: Mapping[str, Any]) -> list[Point]:
        """Points one step away along one dimension, dimension by dimension (up before down)."""
        return [{**point, dim.name: value} for dim in self.dimensions for value in dim.steps(point[dim.name])]


@dataclass(frozen=True)
class Score:
    """What scoring one point gave: the figure compared (higher is better) and its spread."""

    value: float
    low: float
    high: float
    detail: Mapping[str, Any] = field(default_factory=dict)  # the scorer's own figures, for records


@dataclass(frozen=True)
class Trial:
    """One scored point, in the order the search scored them."""

    index: int
    point: Point
    score: Score
    seconds: float  # wall time of this scoring


@dataclass(frozen=True)
class SearchOutcome:
    """The points a search tried and the one it chose."""

    method: str  # "hill" or "grid"
    trials: tuple[Trial, ...]
    chosen: Trial
    complete: bool  # hill: it stopped at a point no neighbour beats; grid: every point was scored
    seconds: float  # the search's wall time, first scoring to last
    budget_s: float

    @property
    def defaults(self) -> Trial:
        return self.trials[0]  # both searches score the defaults first

    @property
    def best(self) -> Trial:
        """The highest-scoring trial (the defaults on a tie); may differ from ``chosen`` by less than
        the tolerance."""
        return max(self.trials, key=lambda t: t.score.value)  # max keeps the first of equals


ScoreFn = Callable[[Point], Score]


class _Scoring:
    """Scores points once each within a time budget; keeps the trials in order."""

    def __init__(self, space: SearchSpace, score: ScoreFn, budget_s: float, clock: Clock) -> None:
        if budget_s < 0:
            raise ValueError(f"the search budget must be >= 0 seconds, got {budget_s}")
        self.space, self._score, self.budget_s, self._clock = space, score, budget_s, clock
        self.start = clock()
        self.trials: list[Trial] = []
        self._by_point: dict[tuple[Any, ...], Trial] = {}

    def key(self, point: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(point[name] for name in self.space.names)

    def scored(self, point: Mapping[str, Any]) -> Trial | None:
        return self._by_point.get(self.key(point))

    def has_time(self) -> bool:
        """Whether one more scoring, as dear as the dearest so far, still ends within the budget."""
        dearest = max((t.seconds for t in self.trials), default=0.0)
        return self._clock() - self.start + dearest <= self.budget_s

    def run(self, point: Mapping[str, Any]) -> Trial:
        if not self.space.contains(point):
            raise ValueError(f"point {dict(point)} lies outside the search space")
        began = self._clock()
        score = self._score(dict(point))
        trial = Trial(index=len(self.trials), point=dict(point), score=score, seconds=self._clock() - began)
        self.trials.append(trial)
        self._by_point[self.key(point)] = trial
        return trial

    def outcome(self, method: str, chosen: Trial, complete: bool) -> SearchOutcome:
        return SearchOutcome(method=method, trials=tuple(self.trials), chosen=chosen, complete=complete,
                             seconds=self._clock() - self.start, budget_s=self.budget_s)


def beats(challenger: Trial, holder: Trial, tolerance: float) -> bool:
    """Whether ``challenger`` scores more than ``1 + tolerance`` times ``holder``."""
    return challenger.score.value > holder.score.value * (1.0 + tolerance)


def hill_climb(space: SearchSpace, score: ScoreFn, *, budget_s: float, tolerance: float = 0.02,
               clock: Clock = time.monotonic) -> SearchOutcome:
    """Steepest-ascent hill climbing from the defaults, as tf.data's autotune climbs.

    Each round scores the current point's unscored neighbours (one step along one dimension) and
    moves to the best of them if it beats the current point (``beats``); the climb ends at a point
    none of its neighbours beats, or when the budget allows no further scoring (then the round cut
    short still counts). Cost: about ``2 x dimensions`` scorings a round, rounds as long as the
    scores keep rising.
    """
    scoring = _Scoring(space, score, budget_s, clock)
    current = scoring.run(space.defaults())
    while True:
        round_best: Trial | None = None
        out_of_time = False
        for point in space.neighbours(current.point):
            if scoring.scored(point) is not None:
                continue
            if not scoring.has_time():
                out_of_time = True
                break
            trial = scoring.run(point)
            if round_best is None or trial.score.value > round_best.score.value:
                round_best = trial
        if round_best is not None and beats(round_best, current, tolerance):
            current = round_best
            if not out_of_time:
                continue
        return scoring.outcome("hill", current, complete=not out_of_time)


def grid_search(space: SearchSpace, score: ScoreFn, *, budget_s: float, tolerance: float = 0.02,
                clock: Clock = time.monotonic) -> SearchOutcome:
    """Every point of the space, the defaults first, while the budget lasts; the best scored point
    is chosen when it beats the defaults (``beats``), else the defaults."""
    scoring = _Scoring(space, score, budget_s, clock)
    defaults = scoring.run(space.defaults())
    complete = True
    for point in _rest(space.grid()):
        if not scoring.has_time():
            complete = False
            break
        scoring.run(point)
    best = max(scoring.trials, key=lambda t: t.score.value)
    return scoring.outcome("grid", best if beats(best, defaults, tolerance) else defaults, complete)


def _rest(points: Iterable[Point]) -> Iterator[Point]:
    """All but the first point (the defaults, scored before the loop)."""
    iterator = iter(points)
    next(iterator)
    yield from iterator


SEARCHES: dict[str, Callable[..., SearchOutcome]] = {"hill": hill_climb, "grid": grid_search}
