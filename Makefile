# Two commands set everything up on a fresh machine with Python 3.10+ and make:
#   make demo   - .venv, install, sample data, a short training run and a quick benchmark
#   make test   - .venv, install with test tools, the whole test suite (CPU; GPU tests skip)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/sample
SAMPLE_IMAGES ?= 2000

.PHONY: demo test lint bench clean help

help:
	@echo "make demo | test | lint | bench | clean | docker | docker-smoke | docker-base"

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per extra set, redone whenever pyproject.toml changes; quick when up to date.
$(VENV)/.deps-demo: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sample]'
	touch $@

$(VENV)/.deps-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sample,tf,s3,dev]'
	touch $@ $(VENV)/.deps-demo

$(DATA)/train: | $(VENV)/.deps-demo
	$(PY) -m dali_pipelines make-sample $(DATA) --images $(SAMPLE_IMAGES)

demo: $(VENV)/.deps-demo $(DATA)/train
	$(PY) -m train --data $(DATA) --epochs 1 --max-steps 30 --batch-size 32 --image-size 112 \
		--out runs/demo --overwrite
	$(PY) -m bench --quick --data $(DATA) --out runs/demo-bench

test: $(VENV)/.deps-test
	$(PY) -m pytest -q

lint: $(VENV)/.deps-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile

# The full sweep (every section that applies to this machine), then the run as one JSON object.
bench: $(VENV)/.deps-test $(DATA)/train
	$(PY) -m bench --data $(DATA) --out bench/results
	$(PY) -m bench report bench/results --json > bench/results/summary.json

clean:
	rm -rf runs .pytest_cache .ruff_cache

# Container (README, "Container"). docker: build the image (BuildKit; pip trusts this machine's
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
