"""CI's checks: .ci/run runs `make check`, which runs ruff, hadolint, mypy (held to its baseline)
and the test suite; the baseline comparison itself, on mypy's output format."""

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    """`make -n ARGS` as a user types it: under `make check` the parent's MAKELEVEL/MAKEFLAGS would
    make this one print "Entering directory" lines around its commands."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def load_baseline_tool():
    """tools/mypy_baseline.py as a module (tools/ is not a package; its dataclass needs sys.modules)."""
    spec = importlib.util.spec_from_file_location("mypy_baseline", ROOT / "tools" / "mypy_baseline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_ci_runs_make_check():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "make check" in commands, f".ci/run must run `make check`; its commands: {commands}"
    assert "make test" not in commands, ".ci/run runs the tests through `make check`, not beside it"


def _words(line: str) -> list[str]:
    """A dry-run line as shell words; [] for a line of a multi-line recipe (an install step that
    runs only when its stamp is missing), which shlex cannot split alone."""
    try:
        return shlex.split(line)
    except ValueError:
        return []


def test_make_check_runs_linters_type_checker_and_tests():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = make_dry_run("check")
    assert done.returncode == 0, done.stderr
    commands = [words for line in done.stdout.splitlines() if (words := _words(line))]

    def runs(program: str, *args: str) -> bool:
        """Some command names ``program`` (bare or as a path) and has every one of ``args``."""
        return any(any(word == program or word.endswith(f"/{program}") for word in command)
                   and all(arg in command for arg in args) for command in commands)

    assert runs("ruff", "check", "."), done.stdout
    assert runs("hadolint", "Dockerfile"), done.stdout
    assert runs("tools/mypy_baseline.py"), done.stdout
    assert runs("pytest"), done.stdout
    assert "mypy" in load_baseline_tool().MYPY, "tools/mypy_baseline.py must run mypy"


MYPY_OUTPUT = """\
train/a.py:10: error: Item "None" of "X | None" has no attribute "y"  [union-attr]
train/a.py:10: note: See https://mypy.rtfd.io/en/stable/_refs.html#code-union-attr
train/a.py:30: error: Item "None" of "X | None" has no attribute "y"  [union-attr]
bench/b.py:7:5: error: Incompatible types in assignment  [assignment]
"""


def test_baseline_holds_errors_without_line_numbers_and_counts_repeats():
    tool = load_baseline_tool()
    held = ['train/a.py: error: Item "None" of "X | None" has no attribute "y"  [union-attr]'] * 2
    held.append("bench/b.py: error: Incompatible types in assignment  [assignment]")

    report = tool.compare(MYPY_OUTPUT.splitlines(), held)
    assert report.ok and report.errors == 3

    new = tool.compare(MYPY_OUTPUT.splitlines(), held[1:])
    assert not new.ok and not new.gone
    assert new.new == [line for line in MYPY_OUTPUT.splitlines() if line.startswith("train/a.py:") and
                       " error: " in line], "a new error is shown with its line numbers"

    gone = tool.compare(MYPY_OUTPUT.splitlines()[1:], held)
    assert not gone.ok and not gone.new
    assert gone.gone == [held[0]], "a fixed error's baseline line is named for deletion"


def test_baseline_fails_on_output_that_is_not_an_error_or_note():
    tool = load_baseline_tool()
    report = tool.compare(["Traceback (most recent call last):", *MYPY_OUTPUT.splitlines()], [])
    assert not report.ok and report.unparsed == ["Traceback (most recent call last):"]


def test_committed_baseline_is_sorted_and_has_no_line_numbers():
    tool = load_baseline_tool()
    lines = tool.BASELINE.read_text().splitlines()
    assert lines == sorted(lines), f"{tool.BASELINE.name} must stay sorted"
    assert all(tool.baseline_key(line) == line for line in lines), \
        f"{tool.BASELINE.name}: each line is `path: error: message  [code]`, without line numbers"


def test_make_gpu_check_with_a_given_python_installs_nothing():
    """On a lent GPU machine (system Python, DALI on PYTHONPATH) the target only runs the check."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = make_dry_run("gpu-check", "PY=python3", "OUT=/tmp/out")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["python3 -m bench check --budget 480 --out /tmp/out"]
