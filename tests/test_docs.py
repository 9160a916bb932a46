"""The documentation site builds with ``mkdocs build --strict`` (every page in the nav, no broken
link, anchor or API reference), and every ``docs/<page>.md#anchor`` that the code, the README or
the Makefile names exists in it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# docs/<page>.md, optionally #anchor: how comments, the README and the Makefile point at a page.
DOC_REFERENCE = re.compile(r"docs/([A-Za-z0-9_-]+)\.md(?:#([A-Za-z0-9_-]+))?")
REFERRING = ["README.md", "Makefile", "Dockerfile", "dali_pipelines", "train", "bench", "tools",
             "docker", "tests"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from this tree into a temporary folder, as `make docs` builds it."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner, not a finding
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    if proc.returncode != 0:
        findings = [line for line in proc.stderr.splitlines() if not line.startswith("INFO")]
        pytest.fail("mkdocs build --strict failed (make docs shows the same; the docs extra installs "
                    "mkdocs: pip install -e '.[docs]'):\n" + "\n".join(findings[-40:]), pytrace=False)
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    built = [name for name in pages if name == "index" or (site / name / "index.html").is_file()]
    assert built == pages, f"pages not built: {sorted(set(pages) - set(built))}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in user_api() if f'id="dali_pipelines.{name}"' not in api]
    assert not missing, f"docs/api.md renders no entry for dali_pipelines.{missing}"


def user_api() -> list[str]:
    """``dali_pipelines.__all__``, read from the source (no DALI import)."""
    tree = ast.parse((ROOT / "dali_pipelines" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("dali_pipelines/__init__.py defines no __all__")


def _references() -> list[tuple[str, str, str | None]]:
    """(file, page, anchor) for every docs/<page>.md[#anchor] in the files that point at pages."""
    found = []
    for name in REFERRING:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*")
                                                     if p.is_file() and p.suffix in (".py", ".sh", ""))
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            found += [(str(file.relative_to(ROOT)), m[1], m[2]) for m in DOC_REFERENCE.finditer(text)]
    return found


def test_every_page_and_anchor_the_code_names_exists(site: Path) -> None:
    refs = _references()
    assert any(page == "gpu" and anchor for _, page, anchor in refs), "no docs/gpu.md#... reference found"
    broken = []
    for file, page, anchor in refs:
        html = site / "index.html" if page == "index" else site / page / "index.html"
        if not html.is_file():
            broken.append(f"{file}: docs/{page}.md does not exist")
        elif anchor and f'id="{anchor}"' not in html.read_text(encoding="utf-8"):
            broken.append(f"{file}: docs/{page}.md has no heading #{anchor}")
    assert not broken, "\n".join(sorted(set(broken)))
