"""Settings declared once: a dataclass field carries the check of the values it accepts in its
metadata, and one loop applies every field's check (``PipelineConfig``, ``train``'s settings).

A check takes the value and the object it belongs to (for a range that depends on another
field) and returns what is wrong with the value, or None when it is accepted; the object's
``error`` puts the field's name in front (the checks here read "<name> must ...").
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

Check = Callable[[Any, Any], str | None]
Bound = float | Callable[[Any], float]  # a number, or one computed from the object (another field)

CHECK = "check"  # the metadata key of a field's check


def declared(default: Any, check: Check | None, **metadata: Any) -> Any:
    """A dataclass field whose ``metadata`` holds ``check`` and any other declarations;
    a callable ``default`` is a factory."""
    meta = {CHECK: check, **metadata}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_fields(instance: Any, error: Callable[[str, str], Exception]) -> None:
    """Raise ``error(field name, problem)`` for the first field, in declaration order, whose
    check refuses its value (so a range may depend on a field declared, and checked, before)."""
    for spec in dataclasses.fields(instance):
        check = spec.metadata.get(CHECK)
        problem = check(getattr(instance, spec.name), instance) if check is not None else None
        if problem is not None:
            raise error(spec.name, problem)


def _number(value: Any) -> bool:
    """A real number (numpy's included), not a bool: True would silently mean 1."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _resolve(bound: Bound, owner: Any) -> float:
    return bound(owner) if callable(bound) else bound


def integer_in(low: Bound, high: Bound) -> Check:
    """An int (not a bool) in ``[low, high]``."""
    def check(value: Any, owner: Any) -> str | None:
        lo, hi = _resolve(low, owner), _resolve(high, owner)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer in [{lo}, {hi}], got {value!r}"
        return None if lo <= value <= hi else f"must be in [{lo}, {hi}], got {value}"
    return check


def or_word(word: str, check: Check) -> Check:
    """The string ``word`` (a value to be resolved later, such as "auto"), or a value ``check`` accepts."""
    def accepts(value: Any, owner: Any) -> str | None:
        if value == word and isinstance(value, str):
            return None
        problem = check(value, owner)
        return None if problem is None else problem.replace("must be ", f"must be {word!r} or ", 1)
    return accepts


def number_in(low: float, high: float) -> Check:
    """An int or float (not a bool) in ``[low, high]``."""
    def check(value: Any, owner: Any) -> str | None:
        if not _number(value):
            return f"must be a number in [{low}, {high}], got {value!r}"
        return None if low <= value <= high else f"must be in [{low}, {high}], got {value!r}"
    return check


def boolean(value: Any, owner: Any) -> str | None:
    """True or False, nothing that merely converts to one."""
    return None if isinstance(value, bool) else f"must be True or False, got {value!r}"


def one_of(choices: Sequence[str]) -> Check:
    """One of ``choices``."""
    def check(value: Any, owner: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}"
    return check


def ordered_pair(low: float, high: float) -> Check:
    """``(min, max)`` with ``low < min <= max <= high``."""
    def check(value: Any, owner: Any) -> str | None:
        ok = isinstance(value, tuple | list) and len(value) == 2 and low < value[0] <= value[1] <= high
        return None if ok else f"must be (min, max) with {low} < min <= max <= {high}, got {value!r}"
    return check


def rgb_in(low: float, high: float) -> Check:
    """Three numbers (R, G, B), each in ``[low, high]``."""
    def check(value: Any, owner: Any) -> str | None:
        ok = isinstance(value, tuple | list) and len(value) == 3 and all(_number(v) and low <= v <= high
                                                                       for v in value)
        return None if ok else f"must be three values (R, G, B) in [{low}, {high}], got {value!r}"
    return check


def parsed_by(parse: Callable[[str], Any]) -> Check:
    """A number the argparse type ``parse`` accepts in its text form: a value given in code meets
    the command line's rule, and the problem is in the command line's words."""
    def check(value: Any, owner: Any) -> str | None:
        if not _number(value):
            return f"expected a number, got {value!r}"
        try:
            parse(str(value))
        except argparse.ArgumentTypeError as err:
            return str(err)
        return None
    return check
