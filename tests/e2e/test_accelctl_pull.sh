#!/usr/bin/env bash
# accelctl pull end to end: an image converted into the store is pulled into
# containerd through accel without fetching any layer blob (3 FUSE mounts)
# and runs; an unconverted image is downloaded, unpacked by containerd's
# diff service and runs; a wrong --address fails with a clear message.
source "$(dirname "$0")/env.sh"
env_init accelctl_pull
start_registry
STORE=$ENV_TMP/store
start_accel --store "$STORE"
start_containerd
accelctl() { "$ACCEL_BIN_DIR/accelctl" "$@"; }
pull() { accelctl pull --address "$CTD_SOCK" --namespace e2e --snapshotter accel --plain-http "$@"; }
blob_gets() { grep -c "GET /v2/[^ ]*/blobs/$1" "$ENV_TMP/registry.log" || true; }
fuse_mounts() { awk -v t="$ENV_TMP/$1/" 'index($2, t) == 1 && $3 ~ /^fuse/' /proc/mounts | wc -l; }

build_fidelity_image "$ENV_TMP/oci:app"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
dst=$REGISTRY/e2e/app:v1-acc

echo "== convert, then accelctl pull the target (remote path)"
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert.out" ||
  fail "convert failed: $(cat "$ENV_TMP/convert.out")"
skopeo inspect --raw --tls-verify=false "docker://$dst" > "$ENV_TMP/target.json"
layers=$(jq -r '.layers[].digest' "$ENV_TMP/target.json")
before=$(for d in $layers; do blob_gets "$d"; done | paste -sd+ | bc)
pull "$dst" > "$ENV_TMP/pull.out" 2> "$ENV_TMP/pull.err" ||
  fail "accelctl pull failed: $(cat "$ENV_TMP/pull.out" "$ENV_TMP/pull.err")"
cat "$ENV_TMP/pull.out"
after=$(for d in $layers; do blob_gets "$d"; done | paste -sd+ | bc)
[[ $after == "$before" ]] || fail "layer blobs were downloaded ($before -> $after GETs)"
[[ $(blob_gets "$(jq -r .config.digest "$ENV_TMP/target.json")") -gt 0 ]] ||
  fail "the registry log shows no blob GETs at all: cannot tell what was fetched"
[[ $(grep -c 'mounted remotely' "$ENV_TMP/pull.out") == 3 ]] || fail "expected 3 remote layers"
[[ $(fuse_mounts accel) == 3 ]] || fail "expected 3 FUSE layer mounts, got $(fuse_mounts accel)"
ctrc images ls -q | grep -qx "$dst" || fail "no image record for $dst"
ctrc leases ls -q | grep -q accelctl-pull && fail "the pull's lease was left behind"
out=$(ctrc run --rm --snapshotter accel "$dst" c1 cat /data/file /opq/new-file)
[[ $out == $'regular\nnew' ]] || fail "container read [$out]"
# Again: every layer is already there.
pull "$dst" > "$ENV_TMP/pull2.out" || fail "second pull failed"
[[ $(grep -c 'already unpacked' "$ENV_TMP/pull2.out") == 3 ]] || fail "second pull: $(cat "$ENV_TMP/pull2.out")"

echo "== accelctl pull an unconverted image (download and unpack)"
build_busybox_image "$ENV_TMP/oci:plain"
mkdir -p "$ENV_TMP/plain-l2/etc"
echo plain > "$ENV_TMP/plain-l2/etc/plain-file"
add_layer "$ENV_TMP/oci:plain" "$ENV_TMP/plain-l2"
push_image "$ENV_TMP/oci:plain" e2e/plain:v1
plain=$REGISTRY/e2e/plain:v1
pull "$plain" > "$ENV_TMP/plain.out" 2> "$ENV_TMP/plain.err" ||
  fail "accelctl pull (plain) failed: $(cat "$ENV_TMP/plain.out" "$ENV_TMP/plain.err")"
cat "$ENV_TMP/plain.out"
[[ $(grep -c 'downloaded and unpacked' "$ENV_TMP/plain.out") == 2 ]] || fail "expected 2 downloaded layers"
out=$(ctrc run --rm --snapshotter accel "$plain" c2 cat /etc/plain-file)
[[ $out == plain ]] || fail "plain image: container read [$out]"

echo "== a wrong --address fails clearly"
if accelctl pull --address "$ENV_TMP/nope.sock" --namespace e2e --plain-http "$plain" \
    > /dev/null 2> "$ENV_TMP/bad.err"; then
  fail "pull with a wrong address succeeded"
fi
cat "$ENV_TMP/bad.err"
grep -q "cannot connect to containerd at $ENV_TMP/nope.sock" "$ENV_TMP/bad.err" ||
  fail "unclear error: $(cat "$ENV_TMP/bad.err")"
echo "== an unknown snapshotter fails clearly"
if pull --snapshotter nosuch "$plain" > /dev/null 2> "$ENV_TMP/nosn.err"; then
  fail "pull with an unknown snapshotter succeeded"
fi
cat "$ENV_TMP/nosn.err"
grep -q 'no snapshotter "nosuch"' "$ENV_TMP/nosn.err" || fail "unclear error: $(cat "$ENV_TMP/nosn.err")"
echo "PASS test_accelctl_pull"
