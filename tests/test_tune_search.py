"""The tuner's search on known surfaces: it finds the optimum, stays in bounds, keeps the defaults on
ties and ends within its time budget (a fake clock: no test waits or times anything)."""

from __future__ import annotations

import pytest

from dali_pipelines.tune.search import Dimension, Score, SearchSpace, grid_search, hill_climb

THREADS = Dimension("num_threads", (1, 2, 3, 4, 6, 8, 12, 16), default=4)
PREFETCH = Dimension("prefetch_queue_depth", (1, 2, 3, 4), default=2)
LOADS = Dimension("hw_decoder_load", (0.0, 0.25, 0.5, 0.75, 1.0), default=1.0)
SPACE = SearchSpace((THREADS, PREFETCH, LOADS))


class Surface:
    """A deterministic score over the space's value indices: each peak's height times 0.8 per squared
    step away from it (every step towards a peak gains 25 %, well above the tolerance); records
    every point asked for."""

    def __init__(self, space: SearchSpace, peaks: list[tuple[dict, float]]) -> None:
        self.space, self.peaks, self.asked = space, peaks, []

    def _index(self, point: dict) -> list[int]:
        return [d.values.index(point[d.name]) for d in self.space.dimensions]

    def __call__(self, point: dict) -> Score:
        assert self.space.contains(point), point  # never a point out of bounds
        self.asked.append(dict(point))
        here = self._index(point)
        value = max(height * 0.8 ** sum((a - b) ** 2 for a, b in zip(here, self._index(peak), strict=True))
                    for peak, height in self.peaks)
        return Score(value, value, value)


class FakeClock:
    """Time that moves only when a scoring runs: ``cost`` seconds each."""

    def __init__(self, cost: float) -> None:
        self.now, self.cost = 0.0, cost

    def __call__(self) -> float:
        return self.now

    def scoring(self, score):
        def timed(point: dict) -> Score:
            self.now += self.cost
            return score(point)

        return timed


def explored(outcome) -> list[dict]:
    return [t.point for t in outcome.trials if t.phase == "explore"]


def test_hill_climb_finds_the_peak_of_a_unimodal_surface() -> None:
    peak = {"num_threads": 8, "prefetch_queue_depth": 3, "hw_decoder_load": 0.5}
    outcome = hill_climb(SPACE, Surface(SPACE, [(peak, 100.0)]), budget_s=1e9)
    assert outcome.chosen == peak
    assert outcome.complete and outcome.confirmed
    assert outcome.trials[0].point == SPACE.defaults()
    points = explored(outcome)
    assert len(points) == len({tuple(p.values()) for p in points}) < SPACE.size  # a climb, not the grid
    assert [t.point for t in outcome.trials if t.phase == "confirm"] == [SPACE.defaults(), peak] * 2


def test_grid_finds_the_global_peak_where_the_climb_stops_at_a_local_one() -> None:
    local = {"num_threads": 4, "prefetch_queue_depth": 3, "hw_decoder_load": 1.0}  # next to the defaults
    best = {"num_threads": 1, "prefetch_queue_depth": 1, "hw_decoder_load": 0.0}
    surface = [(local, 50.0), (best, 80.0)]
    climbed = hill_climb(SPACE, Surface(SPACE, surface), budget_s=1e9)
    searched = grid_search(SPACE, Surface(SPACE, surface), budget_s=1e9)
    assert climbed.chosen == local
    assert searched.chosen == searched.best == best and searched.complete
    assert explored(searched)[0] == SPACE.defaults()
    assert sorted(tuple(p.values()) for p in explored(searched)) == sorted(
        tuple(p.values()) for p in SPACE.grid())


def test_a_peak_beyond_the_bounds_is_met_at_the_edge() -> None:
    beyond = Surface(SPACE, [({"num_threads": 16, "prefetch_queue_depth": 4, "hw_decoder_load": 0.0}, 100.0)])
    outcome = hill_climb(SPACE, lambda p: Score(beyond(p).value + 10 * p["num_threads"], 0, 0), budget_s=1e9)
    assert outcome.chosen == {"num_threads": 16, "prefetch_queue_depth": 4, "hw_decoder_load": 0.0}
    assert all(SPACE.contains(p) for p in beyond.asked)


@pytest.mark.parametrize("search", [hill_climb, grid_search])
def test_the_budget_stops_the_search_before_it_overruns(search) -> None:
    clock = FakeClock(cost=10.0)
    far = {"num_threads": 16, "prefetch_queue_depth": 4, "hw_decoder_load": 0.0}
    outcome = search(SPACE, clock.scoring(Surface(SPACE, [(far, 100.0)])), budget_s=35.0, confirm=0,
                     clock=clock)
    assert len(outcome.trials) == 3  # a fourth would end at 40 s
    assert outcome.seconds == 30.0 <= outcome.budget_s
    assert not outcome.complete and not outcome.confirmed
    assert outcome.value(outcome.chosen) == max(t.score.value for t in outcome.trials)


@pytest.mark.parametrize("search", [hill_climb, grid_search])
def test_the_budget_keeps_room_to_confirm_a_winner(search) -> None:
    clock = FakeClock(cost=10.0)
    low = {"num_threads": 1, "prefetch_queue_depth": 1, "hw_decoder_load": 0.0}  # the grid's second point
    outcome = search(SPACE, clock.scoring(Surface(SPACE, [(low, 100.0)])), budget_s=55.0, confirm=1,
                     clock=clock)
    # Explore while 10 s for a point and 20 s for the confirmation still fit: 3 points, then 2 scorings.
    assert [t.phase for t in outcome.trials] == ["explore"] * 3 + ["confirm"] * 2
    assert outcome.seconds == 50.0 <= outcome.budget_s
    assert outcome.confirmed and outcome.chosen != SPACE.defaults()


@pytest.mark.parametrize("search", [hill_climb, grid_search])
def test_the_defaults_are_scored_even_without_time(search) -> None:
    clock = FakeClock(cost=10.0)
    surface = Surface(SPACE, [(SPACE.defaults(), 1.0)])
    outcome = search(SPACE, clock.scoring(surface), budget_s=0.0, clock=clock)
    assert [t.point for t in outcome.trials] == [SPACE.defaults()]
    assert outcome.chosen == outcome.defaults == SPACE.defaults()


@pytest.mark.parametrize("search", [hill_climb, grid_search])
@pytest.mark.parametrize(("gain", "moves"), [(1.0, False), (1.01, False), (1.05, True)])
def test_the_defaults_win_ties_and_near_ties(search, gain: float, moves: bool) -> None:
    other = {"num_threads": 6, "prefetch_queue_depth": 2, "hw_decoder_load": 1.0}

    def score(point: dict) -> Score:
        value = 100.0 * gain if point == other else 100.0 if point == SPACE.defaults() else 10.0
        return Score(value, value, value)

    outcome = search(SPACE, score, budget_s=1e9, tolerance=0.02)
    assert outcome.chosen == (other if moves else SPACE.defaults())
    assert outcome.value(outcome.chosen) >= outcome.value(outcome.defaults)


@pytest.mark.parametrize("search", [hill_climb, grid_search])
def test_a_lucky_first_score_does_not_survive_its_confirmation(search) -> None:
    lucky = {"num_threads": 6, "prefetch_queue_depth": 2, "hw_decoder_load": 1.0}
    scored: list[dict] = []

    def score(point: dict) -> Score:  # lucky scores 200 once, then 90 against the defaults' 100
        scored.append(point)
        value = (200.0 if scored.count(lucky) == 1 else 90.0) if point == lucky else (
            100.0 if point == SPACE.defaults() else 10.0)
        return Score(value, value, value)

    outcome = search(SPACE, score, budget_s=1e9, confirm=2)
    assert outcome.confirmed and outcome.chosen == SPACE.defaults()
    assert outcome.value(lucky) == 90.0 and outcome.best == SPACE.defaults()


def test_dimensions_and_spaces_refuse_what_cannot_be_searched() -> None:
    with pytest.raises(ValueError, match="the default 5 is not among"):
        Dimension("num_threads", (1, 2, 4), default=5)
    with pytest.raises(ValueError, match="repeats a value"):
        Dimension("num_threads", (1, 2, 2), default=1)
    with pytest.raises(ValueError, match="distinct names"):
        SearchSpace((THREADS, THREADS))
    with pytest.raises(ValueError, match="budget_s, tolerance and confirm >= 0"):
        hill_climb(SPACE, lambda p: Score(1, 1, 1), budget_s=-1)
