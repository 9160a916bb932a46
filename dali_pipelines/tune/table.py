"""A tuning for people: the table of points tried and the lines that say what was chosen."""

from __future__ import annotations

from typing import Any

from dali_pipelines.tune.tuner import TuneResult

_HEADINGS = {"num_threads": "threads", "prefetch_queue_depth": "prefetch", "hw_decoder_load": "hw_load",
             "dtype": "dtype"}


def format_table(result: TuneResult) -> str:
    """One row per scoring in the order run: the settings, median images/s with the repeats' range,
    the seconds it cost, and whether the point is the defaults, the chosen or the best one (marked at
    its first scoring), or a confirmation."""
    names = list(result.defaults)
    head = [_HEADINGS.get(n, n) for n in names]
    rows = [["#", *head, "images/s", "range", "s", ""]]
    seen: list[dict[str, Any]] = []
    for index, trial in enumerate(result.trials):
        point = trial["point"]
        marks = ["confirm"] if trial["phase"] == "confirm" else []
        if point not in seen:
            seen.append(point)
            marks += [name for name, at in (("defaults", result.defaults), ("chosen", result.settings),
                                            ("best", result.best)) if at == point]
        rows.append([str(index), *(_value(point[n]) for n in names), f"{trial['images_per_s']:.1f}",
                     f"{trial['low']:.1f}-{trial['high']:.1f}", f"{trial['seconds']:.1f}", ", ".join(marks)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join(lines)


def format_summary(result: TuneResult) -> str:
    """What was chosen, against the defaults, and what the search cost."""
    chosen = ", ".join(f"{name}={_value(value)}" for name, value in result.settings.items())
    kept = " (the defaults)" if result.settings == result.defaults else ""
    if result.method == "hill":
        end = "converged" if result.complete else "stopped by the time budget"
    else:
        end = "whole grid" if result.complete else "grid cut short by the time budget: raise --seconds"
    points = len({str(t["point"]) for t in result.trials})
    rates = result.images_per_s
    confirmed = ", winner confirmed against the defaults" if result.confirmed else ""
    return "\n".join([
        f"scored by: {result.metric} (medians)",
        f"chosen: {chosen}{kept}: {rates['chosen']:.1f} images/s, {result.gain:.3f}x the defaults "
        f"({rates['defaults']:.1f}); best point {rates['best']:.1f}",
        f"search: {result.method}, {points} of {result.space_size} points in {len(result.trials)} scorings, "
        f"{end}{confirmed}, {result.seconds:.1f} s of {result.budget_s:g} s"])


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
