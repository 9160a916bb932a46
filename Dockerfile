# GPU training and benchmarking image for dali-pipelines. Needs BuildKit, for the RUN mounts
# (the default builder since Docker Engine 23; `DOCKER_BUILDKIT=1` with Engine 20.10-22). No
# `# syntax=` line: the builder's own Dockerfile frontend reads this file, so a build needs no
# registry beyond the base image. `make docker` runs the build (docker/build.sh).
#   docker build -t dali-pipelines .
#   docker run --rm --gpus all -v /data/imagenet:/data:ro -v "$PWD/runs:/runs" dali-pipelines \
#       --data /data --device gpu --epochs 90 --out /runs/googlenet
#
# Build secrets, both optional, mounted only into the RUN steps that call pip and stored in no
# layer, so they never ship in the image:
#   pip_ca         CA bundle pip trusts, for an index behind a TLS-inspecting proxy
#                  (`--secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt`)
#   pip_index_url  index URL for pip instead of PyPI; may carry credentials
#                  (`--secret id=pip_index_url,src=FILE`, the URL as the file's only line)

# Base: CPython slim, not nvidia/cuda. The torch and DALI wheels carry their own CUDA user-space
# libraries (torch: CUDA 13 through the nvidia-*-cu13 wheels; DALI: CUDA 12 through
# nvidia-nvimgcodec-cu12 and friends) and load them from site-packages. The one GPU piece the
# container takes from the host is the driver (libcuda, NVML), which the NVIDIA Container Toolkit
# mounts in with `--gpus`; it must serve the newest CUDA among the wheels: R580+ for torch's
# CUDA 13 build. Any Debian-like image with python3 (3.10+) and its venv module works as a base:
# `make docker-base` builds one from Debian packages for machines that cannot pull images, and
# `--build-arg BASE_IMAGE=dali-pipelines-base:bookworm` uses it. Pinned by tag only: pin with
# `python:3.11.11-slim-bookworm@sha256:...` once a digest is resolved from a registry.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
# Extras of pyproject installed besides the core dependencies. `sample` (scikit-image, ~150 MB)
# lets `dali-pipelines make-sample` build a smoke-test data set inside the container. `tf`
# (tensorflow-cpu, ~1.3 GB) only feeds the tf.data baseline of the benchmark: add it with
# `--build-arg EXTRAS=sample,tf`. `dev` (test tools) never belongs in the image.
ARG EXTRAS=sample

FROM ${BASE_IMAGE} AS base
# Everything is installed into a virtual environment: Debian's own python3 refuses system-wide
# pip installs (PEP 668), and the venv keeps the project apart from the base's Python packages.
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv


# Stage 1: the project wheel, and the dependency list read from pyproject alone.
FROM base AS build
ARG EXTRAS
WORKDIR /src
# The requirements come from pyproject.toml only, so the runtime's multi-GB dependency layer is
# rebuilt when the declared dependencies or EXTRAS change, not on every code edit.
COPY pyproject.toml docker/requirements.py ./
RUN mkdir /reqs && python requirements.py pyproject.toml "${EXTRAS}" > /reqs/requirements.txt
COPY README.md LICENSE ./
COPY dali_pipelines/ dali_pipelines/
COPY train/ train/
COPY bench/ bench/
# pip fetches the build backend (setuptools) from the index, hence the secrets.
RUN --mount=type=secret,id=pip_ca --mount=type=secret,id=pip_index_url \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && if [ -f /run/secrets/pip_index_url ]; then PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)" \
    && export PIP_INDEX_URL; fi \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


# Stage 2: the runtime, with no build context, wheel files or secrets in its layers.
FROM base AS runtime
ARG EXTRAS

# The NVIDIA runtime reads these when a container is started without `--gpus` (e.g. with
# `--runtime=nvidia` or as the default runtime). `video` exposes the driver's JPEG/video engines
# that nvJPEG's hardware decoder (A100, H100) goes through; without it DALI silently falls back to
# CUDA decoding. NVML (`utility`) is what DALI uses to pin its threads near the GPU. Without a GPU
# these are ignored and train/bench pick the CPU.
# DALI_PIPELINES_CACHE: file-verification results live beside the runs, so a new container does
# not re-check an unchanged data set (in the image's home they would vanish with the container).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    MPLCONFIGDIR=/tmp/matplotlib \
    DALI_PIPELINES_CACHE=/runs/.cache/dali_pipelines

# Unprivileged user; /runs is writable by it (named volumes inherit this ownership; for bind
# mounts run with `--user "$(id -u):$(id -g)"`).
RUN groupadd --gid 1000 dali \
 && useradd --uid 1000 --gid 1000 --create-home dali \
 && mkdir -p /data /runs \
 && chown 1000:1000 /runs

# Dependencies first (torch, DALI and their CUDA wheels: the heavy layer, cached across code
# edits). pip's download cache is a BuildKit cache mount, kept out of the image: a rebuild after a
# dependency change re-downloads only what changed, where the index sends caching headers (PyPI
# does; a proxy that strips them makes pip download again).
RUN --mount=type=bind,from=build,source=/reqs,target=/tmp/reqs \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca --mount=type=secret,id=pip_index_url \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && if [ -f /run/secrets/pip_index_url ]; then PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)" \
    && export PIP_INDEX_URL; fi \
 && pip install -r /tmp/reqs/requirements.txt

# Then the project itself, with the same extras, from the wheel of stage 1 only (--no-index):
# a dependency missing from the layer above fails the build here, and `pip check` fails it on
# any conflict. DL3013 (pin versions) does not apply: the one candidate is the local wheel.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    pip install --no-cache-dir --no-index --find-links /tmp/wheels "dali-pipelines[${EXTRAS}]" \
 && pip check

# The base, for tools that compare the image with it (docker/check-secrets.sh). Declared here,
# not above: an ARG in scope is part of every later RUN's cache key.
ARG BASE_IMAGE
LABEL org.opencontainers.image.base.name="${BASE_IMAGE}"

USER 1000:1000
WORKDIR /runs
# /data: the image folders (mount read-only: `-v /data/imagenet:/data:ro`); /runs: checkpoints,
# metrics, benchmark results and the verification cache.
VOLUME ["/data", "/runs"]

# A batch job, not a service: no HEALTHCHECK (the exit status is the health signal).
ENTRYPOINT ["dali-train"]
CMD ["--help"]
