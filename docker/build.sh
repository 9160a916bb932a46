#!/usr/bin/env bash
# Build the image with BuildKit. pip inside the build trusts this machine's CA bundle and, when
# PIP_INDEX_URL is set, uses that index: both are passed as build secrets, which no layer keeps.
#   docker/build.sh                  (what `make docker` runs)
# Environment: IMAGE (default dali-pipelines:latest), BASE_IMAGE and EXTRAS (build arguments,
# default: the Dockerfile's), PIP_CA (default /etc/ssl/certs/ca-certificates.crt when present),
# PIP_INDEX_URL (default: PyPI), DOCKER (the docker client; default: the first one on PATH, or
# /usr/bin/docker, that can build with BuildKit).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-dali-pipelines:latest}
ca=${PIP_CA-/etc/ssl/certs/ca-certificates.crt}

# A client can build with BuildKit when it has the buildx plugin, or when it predates Engine 23,
# whose clients hold BuildKit themselves (enabled by DOCKER_BUILDKIT=1). Newer clients without
# buildx only have the legacy builder, which cannot mount secrets.
has_buildkit() {
    "$1" buildx version >/dev/null 2>&1 && return 0
    local major
    # `docker version` exits 1 when no daemon answers, yet still prints the client's version.
    major=$("$1" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
    [[ $major =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]
}

if [ -n "${DOCKER:-}" ]; then
    candidates=("$DOCKER")
else
    mapfile -t candidates < <(type -ap docker; [ -x /usr/bin/docker ] && echo /usr/bin/docker)
fi
docker=
for candidate in "${candidates[@]}"; do
    if has_buildkit "$candidate"; then docker=$candidate; break; fi
done
if [ -z "$docker" ]; then
    echo "error: no docker client here can build with BuildKit (tried: ${candidates[*]:-none})." >&2
    echo "  Install the buildx plugin (package docker-buildx-plugin or docker-buildx), or set" >&2
    echo "  DOCKER= to a client of Engine 20.10-22 (e.g. Debian's docker.io)." >&2
    exit 2
fi

args=(--tag "$image")
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${EXTRAS+set}" ] && args+=(--build-arg "EXTRAS=$EXTRAS")
if [ -n "$ca" ]; then
    if [ ! -f "$ca" ]; then
        echo "error: PIP_CA=$ca is not a file; point it at a CA bundle, or set PIP_CA= for pip's own" >&2
        exit 2
    fi
    args+=(--secret "id=pip_ca,src=$ca")
fi
if [ -n "${PIP_INDEX_URL:-}" ]; then
    # A secret is read from a file; this one is private to us and removed on exit.
    index_file=$(mktemp)
    trap 'rm -f "$index_file"' EXIT
    printf '%s\n' "$PIP_INDEX_URL" > "$index_file"
    args+=(--secret "id=pip_index_url,src=$index_file")
fi

index="PyPI"; [ -n "${PIP_INDEX_URL:-}" ] && index="PIP_INDEX_URL (not shown)"
echo "building $image with $docker (CA bundle: ${ca:-none, pip uses its own}; index: $index)"
start=$SECONDS
DOCKER_BUILDKIT=1 "$docker" build "${args[@]}" .
size=$("$docker" image inspect --format '{{.Size}}' "$image")
echo "built $image in $((SECONDS - start)) s; image size $((size / 1000000)) MB"
