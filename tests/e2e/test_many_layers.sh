#!/usr/bin/env bash
# An image with 128 layers pulls and runs through accel: the overlay mount
# options containerd builds from accel's paths stay within the kernel's limit.
# accelctl pull of the same image into a second namespace: its labels stay
# within containerd's label size limit, and the blobs, already in the
# (shared) content store, are not downloaded again.
source "$(dirname "$0")/env.sh"
env_init layers
SN=${SNAPSHOTTER:-accel}
start_registry
start_accel
start_containerd
build_busybox_image "$ENV_TMP/oci:many"
for i in $(seq 2 128); do
  mkdir -p "$ENV_TMP/l/$i/layers"
  echo "$i" > "$ENV_TMP/l/$i/layers/$i"
  echo "$i" > "$ENV_TMP/l/$i/top"
  add_layer "$ENV_TMP/oci:many" "$ENV_TMP/l/$i"
done
layers=$(python3 -c '
import json, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
m = idx["manifests"][0]["digest"].split(":")[1]
print(len(json.load(open(d + "/blobs/sha256/" + m))["layers"]))' "$ENV_TMP/oci")
[[ $layers -eq 128 ]] || fail "built $layers layers, want 128"
push_image "$ENV_TMP/oci:many" e2e/many:v1
ref=$REGISTRY/e2e/many:v1
ctrc images pull --plain-http --snapshotter "$SN" "$ref" >/dev/null
out=$(ctrc run --rm --snapshotter "$SN" "$ref" many sh -c 'ls /layers | wc -l; cat /top /layers/2 /layers/128')
[[ $(echo $out) == "127 128 2 128" ]] || fail "container saw: $out"

ctr2() { ctr --address "$CTD_SOCK" --namespace e2e-other "$@"; }
gets() { grep -c "GET /v2/e2e/many/blobs/" "$ENV_TMP/registry.log" || true; }
before=$(gets)
"$ACCEL_BIN_DIR/accelctl" pull --address "$CTD_SOCK" --namespace e2e-other --snapshotter "$SN" --plain-http \
  "$ref" > "$ENV_TMP/pull.out" 2>&1 || fail "accelctl pull of 128 layers failed: $(tail -5 "$ENV_TMP/pull.out")"
[[ $(grep -c 'downloaded and unpacked' "$ENV_TMP/pull.out") == 128 ]] || fail "accelctl pull: $(tail -5 "$ENV_TMP/pull.out")"
# The config and manifest are read from the registry; no layer blob is.
after=$(gets)
((after - before <= 1)) || fail "accelctl pull fetched $((after - before)) blobs that containerd already had"
out=$(ctr2 run --rm --snapshotter "$SN" "$ref" many2 sh -c 'ls /layers | wc -l; cat /top')
[[ $(echo $out) == "127 128" ]] || fail "container (accelctl pull) saw: $out"
ctr2 images rm --sync "$ref" > /dev/null
echo "PASS test_many_layers ($SN)"
