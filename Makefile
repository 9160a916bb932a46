# Two commands set everything up on a fresh machine with Python 3.10+ and make:
#   make demo   - .venv, install, sample data, a short training run and a quick benchmark
#   make test   - .venv, install with test tools, the whole test suite (CPU; GPU tests skip)
#   make check  - what CI runs (.ci/run): make lint, then make test (docs/development.md)
#   make gpu-check - prove a GPU machine in one budgeted command (docs/gpu-check.md)
#   make docs   - the documentation site (mkdocs.yml, docs/) into site/
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/sample
SAMPLE_IMAGES ?= 2000

.PHONY: demo check test test-fast lint typecheck docs bench gpu-check clean help

help:
	@echo "make demo | check | test | test-fast | lint | typecheck | docs | bench | gpu-check | clean | docker | docker-smoke | docker-base"

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per extra set, redone whenever pyproject.toml changes; quick when up to date.
$(VENV)/.deps-demo: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sample]'
	touch $@

$(VENV)/.deps-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sample,tf,s3,dev,peers,docs,export]'
	touch $@ $(VENV)/.deps-demo

# SPDL (the [peers] extra) loads FFmpeg's shared libraries from the system. Where it finds none,
# root with apt-get installs the newest libavdevice this distribution has (it pulls in
# libavcodec, libavformat, libavfilter, libswscale, libavutil; Debian 12: libavdevice59, about
# 90 packages, under a minute). Without root or apt-get the spdl tests skip and say why; a
# failed install is reported and tried again by the next make.
SPDL_FINDS_FFMPEG := $(PY) -c 'import spdl.io.utils as u; print("FFmpeg", u.get_ffmpeg_versions()["libavutil"])'
$(VENV)/.ffmpeg-libs: | $(VENV)/.deps-test
	@if $(SPDL_FINDS_FFMPEG) 2>/dev/null; then touch $@; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "FFmpeg's shared libraries are missing; installing them needs root and apt-get: the spdl tests will skip"; \
		touch $@; \
	elif apt-get update -qq && pkg=$$(apt-cache pkgnames libavdevice | grep -E '^libavdevice[0-9]+$$' | sort -V | tail -n 1) \
		&& [ -n "$$pkg" ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$$pkg" \
		&& $(SPDL_FINDS_FFMPEG); then touch $@; \
	else echo "installing FFmpeg's shared libraries failed: the spdl tests will skip"; fi

$(DATA)/train: | $(VENV)/.deps-demo
	$(PY) -m dali_pipelines make-sample $(DATA) --images $(SAMPLE_IMAGES)

demo: $(VENV)/.deps-demo $(DATA)/train
	$(PY) -m train --data $(DATA) --epochs 1 --max-steps 30 --batch-size 32 --image-size 112 \
		--out runs/demo --overwrite
	$(PY) -m bench --quick --data $(DATA) --out runs/demo-bench

check: lint test

# The suite on TEST_WORKERS processes (pytest-xdist), each taking whole test files, so a module's
# fixtures are built once: a process waiting on a subprocess or a server leaves its core to the
# other. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: $(VENV)/.deps-test $(VENV)/.ffmpeg-libs
	$(PYTEST)

# The suite without the tests marked slow (pytest.mark.slow), for the edit-test loop.
test-fast: $(VENV)/.deps-test $(VENV)/.ffmpeg-libs
	$(PYTEST) -m "not slow"

lint: $(VENV)/.deps-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile
	$(PY) tools/mypy_baseline.py

# mypy on the packages, held to .mypy-baseline.txt: fails on a new error and on a fixed one
# still listed there.
typecheck: $(VENV)/.deps-test
	$(PY) tools/mypy_baseline.py

# The documentation site into site/ (git-ignored), --strict as the test suite builds it. Offline:
# no web fonts or other external assets. NO_MKDOCS_2_WARNING silences mkdocs-material's banner.
docs: $(VENV)/.deps-test
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# The full sweep (every section that applies to this machine), then the run as one JSON object.
bench: $(VENV)/.deps-test $(VENV)/.ffmpeg-libs $(DATA)/train
	$(PY) -m bench --data $(DATA) --out bench/results
	$(PY) -m bench report bench/results --json > bench/results/summary.json

# The GPU check: tests, benchmarks and a training run inside BUDGET seconds, five files in OUT.
# With the .venv python it installs what the tests need first; given another (a lent machine's
# system Python with DALI on PYTHONPATH: make gpu-check PY=python3 OUT=$$OUT) it installs nothing.
OUT ?= runs/gpu-check
BUDGET ?= 480
gpu-check: $(if $(filter $(VENV)/bin/python,$(PY)),$(VENV)/.deps-test)
	$(PY) -m bench check --budget $(BUDGET) --out $(OUT)

clean:
	rm -rf runs site .pytest_cache .ruff_cache .mypy_cache

# Container (docs/container.md). docker: build the image (BuildKit; pip trusts this machine's
# CA bundle through a build secret). docker-smoke: run a built image end to end on the CPU, as
# its non-root user. docker-base: a base image from Debian packages, for machines that cannot
# pull images (root); then `make docker BASE_IMAGE=dali-pipelines-base:bookworm`.
IMAGE ?= dali-pipelines:latest
BASE_IMAGE ?=
DEBIAN_BASE ?= dali-pipelines-base:bookworm
.PHONY: docker docker-smoke docker-base
docker:
	IMAGE='$(IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' docker/build.sh

docker-smoke:
	IMAGE='$(IMAGE)' docker/smoke.sh

docker-base:
	docker/make-base.sh '$(DEBIAN_BASE)'
