#!/usr/bin/env bash
# The end-to-end demo on an embedded default: installs what is missing,
# builds, then starts a private registry (127.0.0.1), a private containerd and
# accel-snapshotter (all state under one temporary directory), builds a
# busybox image, pushes it, pulls it through the "accel" snapshotter, runs a
# container from it, prints `accelctl status`, and stops and unmounts
# everything it started (by PID and by path, never by name).
#
# Usage (as root): scripts/demo.sh
#   ACCEL_SKIP_INSTALL=1 skips apt; ACCEL_KEEP=1 keeps the temporary directory.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) -ne 0 ]]; then echo "demo.sh: run as root (containerd and mounts need it)" >&2; exit 1; fi
[[ ${ACCEL_SKIP_INSTALL:-0} == 1 ]] || "$top/scripts/install-deps.sh"
"$top/scripts/build.sh"

# The same harness the end-to-end tests use (start_*, cleanup on exit).
source "$top/tests/e2e/env.sh"
step() { printf '\n==> %s\n' "$*"; }
env_init demo

step "registry on 127.0.0.1"
start_registry
echo "registry: $REGISTRY"

step "accel-snapshotter"
start_accel --log-level info

step "containerd (private root, state and socket; accel as proxy snapshotter)"
start_containerd

step "build a busybox image and push it"
build_busybox_image "$ENV_TMP/oci:demo"
ref=$REGISTRY/accel/demo:latest
push_image "$ENV_TMP/oci:demo" accel/demo:latest

step "pull through accel"
ctrc images pull --plain-http --snapshotter accel "$ref" | tail -n 2

step "run a container on accel"
out=$(ctrc run --rm --snapshotter accel "$ref" demo-run sh -c 'echo hello from accel; uname -s')
echo "$out"
[[ $out == *"hello from accel"* ]] || fail "unexpected container output"

step "snapshots held by accel"
ctrc snapshots --snapshotter accel tree
"$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL_SOCK"

step "done: stopping everything this demo started"
