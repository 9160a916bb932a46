"""The names a line of a DALI file list can hold: DALI reads "<name> <label>" lines split at
"\n" and trims ASCII whitespace before the label, so a name with a line break, or ending in
whitespace, names another file (or none). Verification refuses such files and no list is
written with them."""

from __future__ import annotations

import re
from collections.abc import Sequence

# read_file_list (Python's splitlines) also splits at the characters after "\n".
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
TRAILING = " \t"  # the whitespace DALI would trim off a name's end that is no line break
_UNLISTABLE = re.compile(f"[{re.escape(LINE_BREAKS)}]|[{TRAILING}]$")
_ENDS = tuple(f"{c}\0" for c in TRAILING)  # a name's end, in names joined by "\0"


def unlistable_reason(name: str) -> str | None:
    """Why ``name`` cannot be a line of a DALI file list (None when it can): a line break inside,
    or whitespace at its end (DALI trims it off before the label)."""
    found = _UNLISTABLE.search(name)
    if found is None:
        return None
    char = found.group()
    what = f"holds a line break ({char!r})" if char in LINE_BREAKS else "ends in whitespace"
    return (f"its name {what}, which a DALI file list line cannot hold (DALI would read another file, "
            "or fail); rename the file")


def unlistable_names(chunk: Sequence[str], start: int, prefix: str) -> dict[int, str]:
    """Index (from ``start``) -> reason for each path of ``chunk`` whose name (relative to
    ``prefix``) a DALI file list cannot hold; one search of the joined chunk when none is there."""
    joined = "\0".join(chunk) + "\0"
    if not (any(c in joined for c in LINE_BREAKS) or any(end in joined for end in _ENDS)):  # as a rule
        return {}
    return {i: reason for i, path in enumerate(chunk, start)
            if (reason := unlistable_reason(path.removeprefix(prefix)))}
