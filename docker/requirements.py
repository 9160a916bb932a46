"""Print the requirements pyproject.toml declares: the core dependencies plus the named extras.

The image installs these in a layer of their own (torch, DALI and their CUDA wheels, several GB)
that is rebuilt only when pyproject.toml or the extras change, not on every code edit.
Usage: python requirements.py PYPROJECT EXTRAS   (EXTRAS: comma-separated, may be empty)
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib


def requirements(pyproject: Path, extras: str) -> list[str]:
    """Core dependencies, then those of each extra in ``extras``; an undeclared extra is an error."""
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = project.get("optional-dependencies", {})
    names = [e.strip() for e in extras.split(",") if e.strip()]
    unknown = [e for e in names if e not in declared]
    if unknown:
        raise SystemExit(f"EXTRAS={extras!r}: {unknown} not declared in {pyproject} "
                         f"(declared: {', '.join(declared)}); fix the build argument")
    return [*project["dependencies"], *(r for e in names for r in declared[e])]


if __name__ == "__main__":
    print(*requirements(Path(sys.argv[1]), sys.argv[2]), sep="\n")
