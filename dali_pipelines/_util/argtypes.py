"""argparse value types shared by the command lines: bad values name what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _checked(convert: Callable[[str], Number], accept: Callable[[Number], bool],
             wanted: str) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    parse.__name__ = wanted  # argparse names the type by it in some messages
    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An integer type for argparse accepting ``low..high`` inclusive."""
    return _checked(int, lambda v: low <= v <= high, f"an integer in [{low}, {high}]")


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
non_negative_float = _checked(float, lambda v: v >= 0, "a number >= 0")
positive_float = _checked(float, lambda v: v > 0, "a number > 0")
positive_seconds = _checked(float, lambda v: 0 < v < float("inf"), "a number of seconds > 0")
fraction = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
proper_fraction = _checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")
# DALI seeds are int32 (each rank adds its shard id; keep well below the limit).
seed = _checked(int, lambda v: 0 <= v < 2**30, "a seed in [0, 2**30)")


def names(flag: str, accepted: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of ``accepted`` names (duplicates dropped); an unknown one is named."""
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
        bad = [item for item in items if item not in accepted]
        if bad:
            unknown = ", ".join(map(repr, bad))
            raise argparse.ArgumentTypeError(
                f"unknown {'name' if len(bad) == 1 else 'names'} {unknown} in {text!r}; "
                f"accepted: {', '.join(accepted)}")
        if not items:
            raise argparse.ArgumentTypeError(
                f"{flag} takes a comma-separated list of: {', '.join(accepted)}; got {text!r}")
        return items
    return parse
