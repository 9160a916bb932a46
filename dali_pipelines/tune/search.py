"""The search over a small discrete space: hill climbing from the defaults, or the whole grid.

Pure logic: a point is scored by a callable (higher is better) and time is read from a clock
given to the search, so the rules can be checked on a known surface with a fake clock.

The rules both searches keep:
- the defaults are scored first, always, even when the budget is smaller than one scoring;
- no point outside the space is ever scored, and none is explored twice;
- a point replaces the defaults (or the climb's current point) only when it scores more than
  ``1 + tolerance`` times as much: the defaults win ties;
- a winner other than the defaults is confirmed: the defaults and the winner are scored again
  (``confirm`` times each, in turn) and the winner is kept only if the median of its scores still
  beats the defaults' median, so one lucky measurement on a busy machine does not move the choice
  (with the default ``confirm=2`` each has three scores, and one outlier cannot decide); the
  outcome's ``confirmed`` says whether the budget left room for it;
- another point is explored only while the time spent plus the dearest scoring so far, times one
  plus the confirmation's scorings, fits the budget; a search therefore ends within it unless a
  single scoring runs longer than all before it.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
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
    """One scoring of a point, in the order the search ran them."""

    point: Point
    score: Score
    seconds: float  # wall time of this scoring
    phase: str = "explore"  # "explore", or "confirm": the defaults and the winner scored again


@dataclass(frozen=True)
class SearchOutcome:
    """The scorings a search ran and the point it chose."""

    method: str  # "hill" or "grid"
    trials: tuple[Trial, ...]
    chosen: Point
    complete: bool  # hill: it stopped at a point no neighbour beats; grid: every point was scored
    confirmed: bool  # the winner was scored again against the defaults (False: no time, or no winner)
    seconds: float  # the search's wall time, first scoring to last
    budget_s: float

    @property
    def defaults(self) -> Point:
        return self.trials[0].point  # both searches score the defaults first

    def value(self, point: Mapping[str, Any]) -> float:
        """The median of ``point``'s scores (one, or more when confirmed)."""
        return statistics.median(t.score.value for t in self.trials if t.point == point)

    @property
    def best(self) -> Point:
        """The point of the highest median score (the first scored of equals); it differs from
        ``chosen`` when it did not beat the defaults by the tolerance, or lost its confirmation."""
        points: list[Point] = []
        for trial in self.trials:
            if trial.point not in points:
                points.append(trial.point)
        return max(points, key=self.value)  # max keeps the first of equals


ScoreFn = Callable[[Point], Score]


class _Scoring:
    """Runs scorings within a time budget, keeps them in order, and confirms a winner."""

    def __init__(self, space: SearchSpace, score: ScoreFn, *, budget_s: float, tolerance: float,
                 confirm: int, clock: Clock) -> None:
        if budget_s < 0 or tolerance < 0 or confirm < 0:
            raise ValueError(f"the search needs budget_s, tolerance and confirm >= 0, got {budget_s}, "
                             f"{tolerance}, {confirm}")
        self.space, self._score, self.budget_s, self._clock = space, score, budget_s, clock
        self.tolerance, self.confirm = tolerance, confirm
        self.start = clock()
        self.trials: list[Trial] = []
        self._explored: dict[tuple[Any, ...], Trial] = {}

    def key(self, point: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(point[name] for name in self.space.names)

    def explored(self, point: Mapping[str, Any]) -> Trial | None:
        return self._explored.get(self.key(point))

    def has_time(self, scorings: int) -> bool:
        """Whether ``scorings`` more, each as dear as the dearest so far, still end within the budget."""
        dearest = max((t.seconds for t in self.trials), default=0.0)
        return self._clock() - self.start + dearest * scorings <= self.budget_s

    def may_explore(self) -> bool:
        """Room for one more point and, after it, the confirmation of a winner."""
        return self.has_time(1 + 2 * self.confirm)

    def run(self, point: Mapping[str, Any], phase: str = "explore") -> Trial:
        if not self.space.contains(point):
            raise ValueError(f"point {dict(point)} lies outside the search space")
        began = self._clock()
        score = self._score(dict(point))
        trial = Trial(point=dict(point), score=score, seconds=self._clock() - began, phase=phase)
        self.trials.append(trial)
        if phase == "explore":
            self._explored[self.key(point)] = trial
        return trial

    def finish(self, method: str, winner: Trial, complete: bool) -> SearchOutcome:
        """Confirm ``winner`` against the defaults when it is not them; the outcome."""
        defaults = self.trials[0]
        confirmed = False
        if winner.point != defaults.point:
            for _ in range(self.confirm):
                if not self.has_time(2):
                    break
                self.run(defaults.point, "confirm")
                self.run(winner.point, "confirm")
                confirmed = True
        outcome = SearchOutcome(method=method, trials=tuple(self.trials), chosen=defaults.point,
                                complete=complete, confirmed=confirmed, seconds=self._clock() - self.start,
                                budget_s=self.budget_s)
        if outcome.value(winner.point) > outcome.value(defaults.point) * (1.0 + self.tolerance):
            outcome = dataclasses.replace(outcome, chosen=winner.point)
        return outcome


def beats(challenger: Trial, holder: Trial, tolerance: float) -> bool:
    """Whether ``challenger`` scores more than ``1 + tolerance`` times ``holder``."""
    return challenger.score.value > holder.score.value * (1.0 + tolerance)


def hill_climb(space: SearchSpace, score: ScoreFn, *, budget_s: float, tolerance: float = 0.02,
               confirm: int = 2, clock: Clock = time.monotonic) -> SearchOutcome:
    """Steepest-ascent hill climbing from the defaults, as tf.data's autotune climbs.

    Each round scores the current point's unexplored neighbours (one step along one dimension) and
    moves to the best of them if it beats the current point (``beats``); the climb ends at a point
    none of its neighbours beats, or when the budget allows no further point (then the round cut
    short still counts). Cost: about ``2 x dimensions`` scorings a round, rounds as long as the
    scores keep rising, then ``2 x confirm`` to confirm a winner.
    """
    scoring = _Scoring(space, score, budget_s=budget_s, tolerance=tolerance, confirm=confirm, clock=clock)
    current = scoring.run(space.defaults())
    while True:
        round_best: Trial | None = None
        out_of_time = False
        for point in space.neighbours(current.point):
            if scoring.explored(point) is not None:
                continue
            if not scoring.may_explore():
                out_of_time = True
                break
            trial = scoring.run(point)
            if round_best is None or trial.score.value > round_best.score.value:
                round_best = trial
        if round_best is not None and beats(round_best, current, tolerance):
            current = round_best
            if not out_of_time:
                continue
        return scoring.finish("hill", current, complete=not out_of_time)


def grid_search(space: SearchSpace, score: ScoreFn, *, budget_s: float, tolerance: float = 0.02,
                confirm: int = 2, clock: Clock = time.monotonic) -> SearchOutcome:
    """Every point of the space, the defaults first, while the budget lasts; the best scored point
    is chosen when it beats the defaults (``beats``) and its confirmation, else the defaults."""
    scoring = _Scoring(space, score, budget_s=budget_s, tolerance=tolerance, confirm=confirm, clock=clock)
    defaults = scoring.run(space.defaults())
    complete = True
    for point in _rest(space.grid()):
        if not scoring.may_explore():
            complete = False
            break
        scoring.run(point)
    best = max(scoring.trials, key=lambda t: t.score.value)
    return scoring.finish("grid", best if beats(best, defaults, tolerance) else defaults, complete)


def _rest(points: Iterable[Point]) -> Iterator[Point]:
    """All but the first point (the defaults, scored before the loop)."""
    iterator = iter(points)
    next(iterator)
    yield from iterator


SEARCHES: dict[str, Callable[..., SearchOutcome]] = {"hill": hill_climb, "grid": grid_search}
