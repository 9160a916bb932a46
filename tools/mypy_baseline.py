"""mypy on the packages named in pyproject.toml ([tool.mypy] files), held to .mypy-baseline.txt.

Fails when mypy reports an error the baseline does not hold (new: fix it) and when a baseline
line no longer occurs (fixed: delete that line), so the baseline can only shrink. A baseline
line is mypy's error line without its line number; an error that occurs twice in a file is
listed twice; the file is sorted.

    python tools/mypy_baseline.py           # what `make typecheck`, `make lint` and `make check` run
    python tools/mypy_baseline.py --write   # rewrite the baseline from this run: only after a file
                                            # moves or mypy/a stub package changes its wording
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".mypy-baseline.txt"
# One line per message, no source excerpts, no summary: the output is parsed line by line.
MYPY = [sys.executable, "-m", "mypy", "--no-pretty", "--no-error-summary", "--hide-error-context",
        "--no-color-output", "--show-error-codes"]
# path[:line[:column[:end line:end column]]]: severity: message
_LINE = re.compile(r"^(?P<path>[^:\s][^:]*)(?::\d+){0,4}: (?P<severity>error|note): (?P<message>.*)$")


@dataclass
class Report:
    """mypy's output against the baseline: errors it does not hold, entries that no longer occur."""

    new: list[str]        # mypy's lines (line numbers kept) of each error found more often than the
                          # baseline holds it: all its occurrences, as mypy cannot tell which is new
    gone: list[str]       # baseline lines, once per missing occurrence
    unparsed: list[str]   # output that is no error or note line: a crash or a configuration problem
    errors: int

    @property
    def ok(self) -> bool:
        return not (self.new or self.gone or self.unparsed)


def baseline_key(line: str) -> str | None:
    """The baseline form of one mypy error line (its line and column numbers dropped), else None."""
    match = _LINE.match(line)
    if match is None or match["severity"] != "error":
        return None
    return f"{match['path']}: error: {match['message']}"


def compare(output: Iterable[str], baseline: Iterable[str]) -> Report:
    """Match mypy's output lines against baseline lines, counting repeats."""
    found: Counter[str] = Counter()
    lines_of: dict[str, list[str]] = {}
    unparsed = []
    for line in (raw.rstrip() for raw in output):
        if not line:
            continue
        key = baseline_key(line)
        if key is not None:
            found[key] += 1
            lines_of.setdefault(key, []).append(line)
        elif _LINE.match(line) is None:
            unparsed.append(line)
    held = Counter(line.rstrip() for line in baseline if line.strip())
    new = [line for key in sorted(found) if found[key] > held[key] for line in lines_of[key]]
    gone = sorted((held - found).elements())
    return Report(new=new, gone=gone, unparsed=unparsed, errors=sum(found.values()))


def run_mypy() -> tuple[int, list[str]]:
    """mypy's exit status and output lines (stdout then stderr), run from the project root."""
    done = subprocess.run(MYPY, cwd=ROOT, capture_output=True, text=True, check=False)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def main(argv: list[str] | None = None) -> int:
    """Run mypy, compare with the baseline (or rewrite it with --write); 0 when they agree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite .mypy-baseline.txt with this run's errors (default: compare)")
    args = parser.parse_args(argv)
    status, output = run_mypy()
    report = compare(output, BASELINE.read_text().splitlines() if BASELINE.exists() else [])
    if status not in (0, 1) or report.unparsed or (status == 1) != (report.errors > 0):
        print(f"mypy failed (exit status {status}); its output:", *output, sep="\n", file=sys.stderr)
        return 2
    name = BASELINE.name
    if args.write:
        keys = sorted(key for line in output if (key := baseline_key(line)) is not None)
        BASELINE.write_text("".join(f"{key}\n" for key in keys))
        print(f"{name}: {len(keys)} lines written; review the diff (git diff {name})")
        return 0
    if report.new:
        print(f"mypy: errors not in {name}; fix them (the baseline only shrinks):",
              *(f"  {line}" for line in report.new), sep="\n", file=sys.stderr)
    if report.gone:
        print(f"{name}: these lines no longer occur; delete them from {name}:",
              *(f"  {line}" for line in report.gone), sep="\n", file=sys.stderr)
    if report.ok:
        print(f"mypy: {report.errors} errors, all held by {name}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
