#!/usr/bin/env bash
# The end-to-end demo on an embedded default: installs what is missing,
# builds, then starts a private registry (127.0.0.1), a private containerd and
# accel-snapshotter with a shared store (all state under one temporary
# directory), builds a multi-layer busybox image, pushes it, converts it into
# the store (`accelctl convert`, which pushes the -acc target image), pulls
# the target with `accelctl pull` through containerd's API (its layers are
# mounted from the store, not downloaded), runs a container from it,
# prints `accelctl store ls` and `accelctl status`, and stops and unmounts
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

step "accel-snapshotter with a shared store"
STORE=$ENV_TMP/store
start_accel --log-level info --store "$STORE"

step "containerd (private root, state and socket; accel as proxy snapshotter)"
start_containerd

step "build a three-layer image and push it"
build_fidelity_image "$ENV_TMP/oci:demo"
src=$REGISTRY/accel/demo:v1
push_image "$ENV_TMP/oci:demo" accel/demo:v1

step "convert it into the store (pushes the target image $src-acc)"
"$ACCEL_BIN_DIR/accelctl" convert --plain-http --store "$STORE" "$src"
"$ACCEL_BIN_DIR/accelctl" store ls --store "$STORE"

step "pull the target image through accel: layers are mounted from the store"
dst=$src-acc
layer_gets() { grep -c "GET /v2/accel/demo/blobs/" "$ENV_TMP/registry.log" || true; }
before=$(layer_gets)
"$ACCEL_BIN_DIR/accelctl" pull --address "$CTD_SOCK" --namespace e2e --plain-http "$dst"
awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $3 ~ /^fuse/ {print "  FUSE mount:", $1, $2}' /proc/mounts
# The pull fetched the manifest and the config; convert had read the layers.
fetched=$(( $(layer_gets) - before ))
((fetched <= 1)) || fail "the pull downloaded $fetched blobs (the config alone was expected)"
echo "blobs downloaded by the pull: $fetched (the image config); layer blobs: none"

step "run a container on accel"
out=$(ctrc run --rm --snapshotter accel "$dst" demo-run sh -c 'echo hello from accel; cat /data/file /opq/new-file')
echo "$out"
[[ $out == *"hello from accel"* ]] || fail "unexpected container output"

step "snapshots held by accel, and the daemon's status"
ctrc snapshots --snapshotter accel tree
"$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL_SOCK"

step "done: stopping everything this demo started"
