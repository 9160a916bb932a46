# syntax=docker/dockerfile:1
# GPU training and benchmarking image for dali-pipelines (needs BuildKit: the default builder
# since Docker Engine 23).
#   docker build -t dali-pipelines .
#   docker run --rm --gpus all -v /data/imagenet:/data -v "$PWD/runs:/runs" dali-pipelines \
#       --data /data --device gpu --epochs 90 --out /runs/googlenet
#
# Extras of pyproject installed besides the core dependencies (a global ARG, so every stage that
# re-declares it sees this default). `sample` (scikit-image, ~150 MB) lets `dali-pipelines
# make-sample` build a smoke-test data set inside the container. `tf` (tensorflow-cpu, ~1.3 GB) is
# left out: it only feeds the tf.data baseline of the benchmark and would grow an already ~7 GB
# image by a fifth; build with `--build-arg EXTRAS=sample,tf` to benchmark that backend too.
# `dev` (test tools) never belongs in the image.
ARG EXTRAS=sample

# Base image: CPython slim, not nvidia/cuda. The torch and DALI wheels carry their own CUDA
# user-space libraries (torch: CUDA 13 through the nvidia-*-cu13 / cuda-toolkit wheels; DALI:
# CUDA 12 through nvidia-nvimgcodec-cu12 and friends) and load them from site-packages. The one
# GPU piece the container takes from the host is the driver (libcuda, NVML), which the NVIDIA
# Container Toolkit mounts in with `--gpus`. A CUDA runtime base would add a third copy of the
# CUDA libraries that neither library loads, plus an OS Python we would have to replace. The
# host driver must serve the newest CUDA among the wheels: R580+ for torch's CUDA 13 build
# (DALI cuda120 alone needs R525+).
# Pinned by tag only: this file was written without registry access, so no digest could be
# read. Pin it with `FROM python:3.11.11-slim-bookworm@sha256:...` once one is resolved.
FROM python:3.11.11-slim-bookworm AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore


# Stage 1: the project wheel, and the dependency list read from pyproject alone.
FROM base AS build
ARG EXTRAS
WORKDIR /src
# The requirements come from pyproject.toml only, so the runtime's multi-GB dependency layer is
# rebuilt when the declared dependencies or EXTRAS change, not on every code edit.
COPY pyproject.toml ./
RUN mkdir /reqs \
 && python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = [e for e in sys.argv[1].split(',') if e]; print(*p['dependencies'], *(r for e in x for r in p['optional-dependencies'][e]), sep=chr(10))" "${EXTRAS}" > /reqs/requirements.txt
COPY README.md ./
COPY dali_pipelines/ dali_pipelines/
COPY train/ train/
COPY bench/ bench/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


# Stage 2: the runtime, with no build context and no wheel files left in its layers.
FROM base AS runtime
ARG EXTRAS

# The NVIDIA runtime reads these when a container is started without `--gpus` (e.g. with
# `--runtime=nvidia` or as the default runtime). `video` exposes the driver's JPEG/video engines
# that nvJPEG's hardware decoder (A100, H100) goes through; without it DALI silently falls back to
# CUDA decoding. NVML (`utility`) is what DALI uses to pin its threads near the GPU.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    MPLCONFIGDIR=/tmp/matplotlib

# Unprivileged user; /runs is writable by it (named volumes inherit this ownership; for bind
# mounts run with `--user "$(id -u):$(id -g)"`).
RUN groupadd --gid 1000 dali \
 && useradd --uid 1000 --gid 1000 --create-home dali \
 && mkdir -p /data /runs \
 && chown 1000:1000 /runs

# Dependencies first (torch, DALI and their CUDA wheels: the heavy layer, cached across code edits).
RUN --mount=type=bind,from=build,source=/reqs,target=/tmp/reqs \
    pip install --no-cache-dir -r /tmp/reqs/requirements.txt

# Then the project itself, with the same extras. --no-index: everything it needs must already be
# in the layer above, so a dependency missing from requirements.txt fails the build here.
# DL3013 (pin versions) does not apply: the argument is the wheel built in stage 1, but with the
# extras appended it no longer ends in `.whl`, the only form of a local file hadolint recognises.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    set -- /tmp/wheels/dali_pipelines-*.whl \
 && pip install --no-cache-dir --no-index "$1[${EXTRAS}]" \
 && pip check

USER 1000:1000
WORKDIR /runs
# /data: the image folders (mount read-only: `-v /data/imagenet:/data:ro`); /runs: checkpoints,
# metrics and benchmark results.
VOLUME ["/data", "/runs"]

# A batch job, not a service: no HEALTHCHECK (the exit status is the health signal).
ENTRYPOINT ["dali-train"]
CMD ["--help"]
