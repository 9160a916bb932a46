#!/usr/bin/env bash
# Build a base image from Debian packages, for machines that can reach a Debian mirror and a
# Python package index but no image registry: debootstrap a minimal bookworm root file system
# with python3 (3.11), its venv module and the CA certificates, then `docker import` it.
# Needs root (debootstrap) and the debootstrap package. About 40 s and 180 MB.
#   docker/make-base.sh [NAME]     (default NAME: dali-pipelines-base:bookworm)
# Then: make docker BASE_IMAGE=NAME
set -euo pipefail

name=${1:-dali-pipelines-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

if [ "$(id -u)" -ne 0 ]; then
    echo "error: $0 needs root (debootstrap creates device nodes and chroots); run it with sudo" >&2
    exit 2
fi
if ! command -v debootstrap >/dev/null; then
    echo "error: debootstrap is not installed: apt-get install -y debootstrap" >&2
    exit 2
fi

rootfs=$(mktemp -d /tmp/dali-base.XXXXXX)
# --one-file-system: should debootstrap die with /proc or /sys still mounted inside the root
# file system, rm must not descend into them.
trap 'rm -rf --one-file-system "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror"

# What official Debian images leave out as well: downloaded .debs and package lists (~95 MB),
# and this machine's resolver and host name, which Docker provides to each container.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
rm -f "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname

tar --numeric-owner -C "$rootfs" -c . \
    | "$docker" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --message "debootstrap --variant=minbase $suite with python3, python3-venv, ca-certificates" \
        - "$name"
"$docker" run --rm --network none "$name" python3 -c 'import ssl, sys, venv; print("base ok:", sys.version.split()[0])'
echo "built $name; use it with: make docker BASE_IMAGE=$name"
