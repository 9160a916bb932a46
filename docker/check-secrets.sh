#!/usr/bin/env bash
# Prove that an image holds none of its build secrets: no pip CA or index setting in its config
# or history, nothing left in /run/secrets, and none of the CA bundle's own certificates (those
# its base image does not trust already) in any file of the image, a copy of the bundle included.
#   docker/check-secrets.sh IMAGE      (exit 1, naming what leaked, when something did)
# Environment: DOCKER (default docker); PIP_CA (the CA bundle the build was given; default
# /etc/ssl/certs/ca-certificates.crt when present; empty: the file scan is skipped);
# PIP_INDEX_URL (when the build was given one: it must appear nowhere either).
set -euo pipefail

image=${1:?usage: docker/check-secrets.sh IMAGE}
docker=${DOCKER:-docker}
ca=${PIP_CA-/etc/ssl/certs/ca-certificates.crt}

fail() { echo "build secret in $image: $*" >&2; exit 1; }

config=$("$docker" image inspect --format '{{json .Config}}' "$image")
history=$("$docker" history --no-trunc --format '{{.CreatedBy}}' "$image")
pip_setting='PIP_(CERT|CLIENT_CERT|INDEX_URL|EXTRA_INDEX_URL)='
# In the config: an ENV entry. In the history: a build argument, listed before a RUN's command
# as `RUN |2 NAME=value ... /bin/sh -c ...` (the commands themselves may name the variables).
grep -q -E "\"$pip_setting" <<<"$config" && fail "a pip CA or index setting in the image's environment"
grep -q -E "^RUN \|[0-9]+ ([A-Za-z_][A-Za-z0-9_]*=[^ ]* )*$pip_setting" <<<"$history" && fail "a pip CA or index build argument"
for text in "$config" "$history"; do
    grep -q -E '[a-z+]+://[^/@[:space:]]+:[^/@[:space:]]+@' <<<"$text" && fail "a URL with credentials"
    grep -q 'BEGIN CERTIFICATE' <<<"$text" && fail "a certificate in the image config or history"
    if [ -n "${PIP_INDEX_URL:-}" ] && grep -qF "$PIP_INDEX_URL" <<<"$text"; then
        fail "PIP_INDEX_URL in the image config or history"
    fi
done

if [ -z "$ca" ] || [ ! -f "$ca" ]; then
    echo "no CA bundle (PIP_CA=$ca): config and history are clean; the file scan is skipped"
    exit 0
fi

# The bundle's own certificates: those the base image does not trust already (the base is an
# input the build never writes to, so a leak into the image's trust store is still found). One
# base64 line from the middle of a certificate identifies it.
base=$("$docker" image inspect --format '{{index .Config.Labels "org.opencontainers.image.base.name"}}' "$image")
[ -n "$base" ] || fail "cannot tell: $image has no org.opencontainers.image.base.name label"
"$docker" image inspect "$base" >/dev/null 2>&1 \
    || fail "cannot tell: its base image $base is not here (docker pull $base, or PIP_CA= to skip the scan)"
mid() { awk '/-BEGIN CERTIFICATE-/ {n = 0; next} /-END CERTIFICATE-/ {print l[int(n / 2)]; next} {l[n++] = $0}' "$@"; }
trusted=$("$docker" run --rm --network none --entrypoint cat "$base" /etc/ssl/certs/ca-certificates.crt || true)
private=$(mid "$ca" | sort -u | grep -vxF -f <(printf '%s\n' "$trusted") || true)
echo "$(grep -c . <<<"$private" || true) certificate(s) of $ca are not trusted by $base: searching every file of $image"

# As root, to read every file. The patterns go to /dev/shm, another file system, which
# `find -xdev` skips (as it skips /proc, /sys and the bind mounts Docker adds).
# shellcheck disable=SC2016 # the script is expanded by the container's shell
printf '%s\n' "$private" | "$docker" run --rm -i --network none --user 0 --entrypoint sh "$image" -c '
    set -eu
    grep . > /dev/shm/private || true
    if [ -n "$(ls -A /run/secrets 2>/dev/null)" ]; then echo "files left in /run/secrets"; exit 1; fi
    # find exits 1 when any grep batch matches nothing: its output decides, not its status.
    hits=$(if [ -s /dev/shm/private ]; then find / -xdev -type f -exec grep -lF -f /dev/shm/private {} +; fi || true)
    if [ -n "$hits" ]; then echo "certificates of the CA bundle in: $hits"; exit 1; fi
' || fail "see above"
echo "no build secret in $image"
