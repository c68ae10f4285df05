#!/usr/bin/env bash
# Pull a plain image through the accel snapshotter and run containers from it.
# SNAPSHOTTER=overlayfs runs the same checks against containerd's built-in one.
source "$(dirname "$0")/env.sh"
env_init pull-run
SN=${SNAPSHOTTER:-accel}
start_registry
start_accel
start_containerd

build_busybox_image "$ENV_TMP/oci:v1"
mkdir -p "$ENV_TMP/l2/etc"
echo "second layer" > "$ENV_TMP/l2/etc/motd"
add_layer "$ENV_TMP/oci:v1" "$ENV_TMP/l2"
ref=$REGISTRY/e2e/busybox:v1
push_image "$ENV_TMP/oci:v1" e2e/busybox:v1

ctrc images pull --plain-http --snapshotter "$SN" "$ref" >/dev/null
out=$(ctrc run --rm --snapshotter "$SN" "$ref" once sh -c 'echo hello-accel; cat /etc/motd')
[[ $out == $'hello-accel\nsecond layer' ]] || fail "container output: '$out'"

# A container writes a file; its own snapshot (the active one) shows it.
ctrc run --snapshotter "$SN" "$ref" writer sh -c 'echo data > /written' >/dev/null
ctrc snapshots --snapshotter "$SN" info writer >/dev/null || fail "no snapshot for container writer"
mkdir -p "$ENV_TMP/mnt"
ctrc snapshots --snapshotter "$SN" mounts "$ENV_TMP/mnt" writer | sh
[[ $(cat "$ENV_TMP/mnt/written") == data ]] || fail "the container's snapshot lacks /written"
[[ $(cat "$ENV_TMP/mnt/etc/motd") == "second layer" ]] || fail "lower layers missing from the snapshot"
umount "$ENV_TMP/mnt"
ctrc container rm writer
ctrc snapshots --snapshotter "$SN" info writer >/dev/null 2>&1 && fail "snapshot kept after container rm"

if [[ $SN == accel ]]; then
  # The layers really are accel's: committed snapshots in its database.
  n=$("$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL_SOCK" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"]["committed"])')
  [[ $n -eq 2 ]] || fail "accel holds $n committed snapshots, want 2"
fi
# Removing the image lets containerd's GC remove the layers from the snapshotter.
ctrc images rm --sync "$ref" >/dev/null
for _ in $(seq 50); do [[ -z $(ctrc snapshots --snapshotter "$SN" ls -q 2>/dev/null | grep -v '^KEY') ]] && break; sleep 0.2; done
left=$(ctrc snapshots --snapshotter "$SN" ls | tail -n +2)
[[ -z $left ]] || fail "snapshots left after image removal: $left"
echo "PASS test_pull_run ($SN)"
