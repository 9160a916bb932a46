#!/usr/bin/env bash
# End-to-end check of a built image (what `make docker-smoke` runs): no build secret in the
# image, then as its non-root user and with no network: a sample data set made into a volume,
# verified, a short training run checkpointed to the mounted run directory and resumed from that
# checkpoint, and the quick benchmark. Any failed step stops it with a message and exit 1.
#   docker/smoke.sh
# Environment: IMAGE (default dali-pipelines:latest); DOCKER (default docker); PIP_CA and
# PIP_INDEX_URL (what the build was given; see check-secrets.sh);
# SMOKE_DEVICE (cpu, the default, or gpu: adds `--gpus all` and trains with --device gpu);
# SMOKE_IMAGES (sample size, default 160).
set -euo pipefail

image=${IMAGE:-dali-pipelines:latest}
docker=${DOCKER:-docker}
ca=${PIP_CA-/etc/ssl/certs/ca-certificates.crt}
device=${SMOKE_DEVICE:-cpu}
images=${SMOKE_IMAGES:-160}
start=$SECONDS

fail() { echo "smoke FAILED: $*" >&2; exit 1; }
step() { echo "== [$((SECONDS - start)) s] $*"; }

case $device in
    cpu) gpu_flags=() ;;
    gpu) gpu_flags=(--gpus all) ;;
    *) fail "SMOKE_DEVICE=$device: use cpu or gpu" ;;
esac
"$docker" image inspect "$image" >/dev/null 2>&1 || fail "no image $image here: build it first (make docker)"

data=dali-smoke-$$-data
runs=dali-smoke-$$-runs
trap '"$docker" volume rm -f "$data" "$runs" >/dev/null 2>&1 || true' EXIT
"$docker" volume create "$data" >/dev/null
"$docker" volume create "$runs" >/dev/null

# One container per step, removed after it; --network none: nothing may download at run time.
# 1 GB of /dev/shm for the benchmark's DataLoader workers (Docker's default is 64 MB).
run() { "$docker" run --rm --network none --shm-size=1g "$@"; }
# A Python module of the image, as its own user, data read-only and the run directory writable.
in_image() { run "${gpu_flags[@]}" -v "$data:/data:ro" -v "$runs:/runs" --entrypoint python "$image" "$@"; }
checkpoint_step() {
    in_image -c 'import sys, torch; print(torch.load(sys.argv[1], map_location="cpu", weights_only=True)["step"])' \
        /runs/train/checkpoints/last.pt
}

step "image $image: $(( $("$docker" image inspect --format '{{.Size}}' "$image") / 1000000 )) MB"

step "no build secret in the image"
DOCKER=$docker PIP_CA=$ca "$(dirname "$0")/check-secrets.sh" "$image" || fail "the image holds build secrets"

step "runs as a non-root user"
uid=$(run --entrypoint id "$image" -u)
[ "$uid" != 0 ] || fail "the image runs as root"

step "make-sample: $images JPEGs into a volume"
run -v "$data:/runs" --entrypoint python "$image" -m dali_pipelines make-sample /runs --images "$images"

step "verify (data mounted read-only)"
in_image -m dali_pipelines verify /data/train

train=(--data /data --device "$device" --epochs 1 --batch-size 8 --image-size 64 --out /runs/train)
step "train 2 steps on $device (the image's entrypoint), checkpoint to /runs/train"
run "${gpu_flags[@]}" -v "$data:/data:ro" -v "$runs:/runs" "$image" "${train[@]}" --max-steps 2
[ "$(checkpoint_step)" = 2 ] || fail "/runs/train/checkpoints/last.pt does not hold step 2"

step "resume from the checkpoint to step 4"
in_image -m train --resume /runs/train/checkpoints/last.pt "${train[@]}" --max-steps 4
[ "$(checkpoint_step)" = 4 ] || fail "the resumed run did not continue to step 4"

step "bench --quick"
in_image -m bench --quick --data /data --out /runs/bench
in_image -c 'import glob, json, sys; r = glob.glob("/runs/bench/*.json"); [json.load(open(p)) for p in r]; sys.exit(not r)' \
    || fail "bench wrote no readable JSON result to /runs/bench"

step "smoke passed ($device)"
