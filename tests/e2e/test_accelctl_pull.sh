#!/usr/bin/env bash
# accelctl pull end to end: an image converted into the store is pulled into
# containerd through accel without fetching any layer blob (3 FUSE mounts)
# and runs; an eStargz image made by ctr-remote is mounted lazily, fetching
# a small part of its blobs, and runs; an unconverted image is downloaded,
# unpacked by containerd's diff service and runs; a wrong --address, an
# unknown snapshotter and a bad --parallel fail with a clear message.
source "$(dirname "$0")/env.sh"
env_init accelctl_pull
start_registry
STORE=$ENV_TMP/store
start_accel_lazy --store "$STORE"
start_containerd
pull() { accelctl pull --address "$CTD_SOCK" --namespace e2e --snapshotter accel --plain-http "$@"; }

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
# Again, with containerd's socket and namespace from the environment (and
# the default snapshotter, accel): every layer is already there.
CONTAINERD_ADDRESS=$CTD_SOCK CONTAINERD_NAMESPACE=e2e accelctl pull --plain-http "$dst" > "$ENV_TMP/pull2.out" ||
  fail "second pull (environment) failed"
[[ $(grep -c 'already unpacked' "$ENV_TMP/pull2.out") == 3 ]] || fail "second pull: $(cat "$ENV_TMP/pull2.out")"

echo "== the same target into overlayfs: every layer is declined and downloaded"
pull --snapshotter overlayfs "$dst" > "$ENV_TMP/ovl.out" 2>&1 || fail "pull into overlayfs: $(cat "$ENV_TMP/ovl.out")"
cat "$ENV_TMP/ovl.out"
[[ $(grep -c 'downloaded and unpacked' "$ENV_TMP/ovl.out") == 3 ]] || fail "expected 3 downloaded layers"
out=$(ctrc run --rm --snapshotter overlayfs "$dst" c0 cat /data/file /opq/new-file)
[[ $out == $'regular\nnew' ]] || fail "overlayfs container read [$out]"

echo "== accelctl pull an eStargz image made by ctr-remote (lazy)"
build_busybox_image "$ENV_TMP/oci:lazy"
mkdir -p "$ENV_TMP/lazy-l2/data"
head -c $((16 << 20)) /dev/urandom > "$ENV_TMP/lazy-l2/data/big.bin"
echo lazy > "$ENV_TMP/lazy-l2/data/small.txt"
add_layer "$ENV_TMP/oci:lazy" "$ENV_TMP/lazy-l2"
push_image "$ENV_TMP/oci:lazy" e2e/lazy:v1
esgz=$REGISTRY/e2e/lazy:v1-esgz
estargz_with_ctr_remote "$REGISTRY/e2e/lazy:v1" "$esgz"
skopeo inspect --raw --tls-verify=false "docker://$esgz" > "$ENV_TMP/esgz.json"
esgz_size=$(jq '[.layers[].size] | add' "$ENV_TMP/esgz.json")
pull "$esgz" > "$ENV_TMP/esgz.out" 2> "$ENV_TMP/esgz.err" ||
  fail "accelctl pull (eStargz) failed: $(cat "$ENV_TMP/esgz.out" "$ENV_TMP/esgz.err")"
cat "$ENV_TMP/esgz.out"
[[ $(grep -c 'mounted remotely' "$ENV_TMP/esgz.out") == 2 ]] || fail "expected 2 lazy layers"
out=$(ctrc run --rm --snapshotter accel "$esgz" c3 cat /data/small.txt)
[[ $out == lazy ]] || fail "eStargz image: container read [$out]"
fetched=$(for d in $(jq -r '.layers[].digest' "$ENV_TMP/esgz.json"); do registry_blob_bytes "$d"; done |
  sed 's/^$/0/' | paste -sd+ | bc)
echo "eStargz: fetched $fetched of $esgz_size layer bytes"
((fetched * 4 < esgz_size)) || fail "fetched $fetched of $esgz_size bytes: not lazy"

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
# A layer compressed with zstd (containerd's diff service unpacks it). skopeo
# reuses blobs the registry already has, so the busybox layer may stay gzip.
build_busybox_image "$ENV_TMP/oci:zstd"
mkdir -p "$ENV_TMP/zstd-l2/etc"
echo zstd > "$ENV_TMP/zstd-l2/etc/zstd-file"
add_layer "$ENV_TMP/oci:zstd" "$ENV_TMP/zstd-l2"
skopeo copy --quiet --dest-tls-verify=false --dest-compress-format zstd --dest-compress \
  "oci:$ENV_TMP/oci:zstd" "docker://$REGISTRY/e2e/zstd:v1"
[[ $(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/e2e/zstd:v1" | jq -r '.layers[1].mediaType') == *zstd ]] ||
  fail "the zstd image's top layer is not zstd"
pull "$REGISTRY/e2e/zstd:v1" > "$ENV_TMP/zstd.out" 2>&1 || fail "accelctl pull (zstd) failed: $(cat "$ENV_TMP/zstd.out")"
out=$(ctrc run --rm --snapshotter accel "$REGISTRY/e2e/zstd:v1" c2z cat /etc/zstd-file)
[[ $out == zstd ]] || fail "zstd image: container read [$out]"

echo "== an index: the host's platform by default, another with --platform"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$plain" "docker://$REGISTRY/e2e/multi:amd64"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$esgz" "docker://$REGISTRY/e2e/multi:arm64"
desc() { # TAG ARCH: the tag's manifest descriptor, as the registry serves it, with a platform
  local h=$ENV_TMP/desc.h
  curl -fsS -o /dev/null -D "$h" -I \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/e2e/multi/manifests/$1"
  hdr() { grep -i "^$1:" "$h" | cut -d' ' -f2 | tr -d '\r'; }
  jq -n --arg d "$(hdr Docker-Content-Digest)" --argjson s "$(hdr Content-Length)" --arg mt "$(hdr Content-Type)" \
    --arg a "$2" '{mediaType: $mt, digest: $d, size: $s, platform: {os: "linux", architecture: $a}}'
}
jq -n --argjson a "$(desc amd64 amd64)" --argjson b "$(desc arm64 arm64)" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$b, $a]}' > "$ENV_TMP/index.json"
curl -sS -o "$ENV_TMP/put.out" -w "%{http_code}" -X PUT -H "Content-Type: application/vnd.oci.image.index.v1+json" --data-binary "@$ENV_TMP/index.json" \
  "http://$REGISTRY/v2/e2e/multi/manifests/idx" > "$ENV_TMP/put.code"
[[ $(cat "$ENV_TMP/put.code") == 201 ]] || fail "cannot push the index: $(cat "$ENV_TMP/put.code" "$ENV_TMP/put.out" "$ENV_TMP/index.json")"
multi=$REGISTRY/e2e/multi:idx
pull "$multi" > "$ENV_TMP/multi.out" || fail "pull of an index failed"
cat "$ENV_TMP/multi.out"
grep -q "($(jq -r '.manifests[1].digest' "$ENV_TMP/index.json"))" "$ENV_TMP/multi.out" ||
  fail "the index pull did not pick the linux/amd64 manifest"
[[ $(ctrc images ls | awk -v n="$multi" '$1 == n {print $2}') == application/vnd.oci.image.index.v1+json ]] ||
  fail "the image record does not point at the index: $(ctrc images ls)"
out=$(ctrc run --rm --snapshotter accel "$multi" c4 cat /etc/plain-file)
[[ $out == plain ]] || fail "index image: container read [$out]"
pull --platform linux/arm64 "$multi" > "$ENV_TMP/multi-arm.out" || fail "pull --platform linux/arm64 failed"
grep -q "($(jq -r '.manifests[0].digest' "$ENV_TMP/index.json"))" "$ENV_TMP/multi-arm.out" ||
  fail "--platform linux/arm64 did not pick that manifest: $(cat "$ENV_TMP/multi-arm.out")"
ctrc images rm --sync "$multi" > /dev/null

echo "== a corrupted layer blob fails the pull and leaves nothing behind"
build_busybox_image "$ENV_TMP/oci:bad"
mkdir -p "$ENV_TMP/bad-l2/etc"
head -c 300000 /dev/urandom > "$ENV_TMP/bad-l2/etc/bad-file"
add_layer "$ENV_TMP/oci:bad" "$ENV_TMP/bad-l2"
push_image "$ENV_TMP/oci:bad" e2e/bad:v1
bad_layer=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/e2e/bad:v1" | jq -r '.layers[1].digest')
blob=$ENV_TMP/registry/docker/registry/v2/blobs/sha256/${bad_layer:7:2}/${bad_layer:7}/data
[[ -f $blob ]] || fail "no registry blob file $blob"
head -c "$(stat -c %s "$blob")" /dev/urandom > "$blob.new" && mv "$blob.new" "$blob"
if pull "$REGISTRY/e2e/bad:v1" > "$ENV_TMP/bad.out" 2> "$ENV_TMP/bad.err"; then
  fail "pull of a corrupted layer succeeded"
fi
cat "$ENV_TMP/bad.out" "$ENV_TMP/bad.err"
grep -q "$bad_layer" "$ENV_TMP/bad.err" || fail "the error does not name the bad layer"
# (Layers committed below the bad one stay, unreferenced, for containerd's
# GC, as after an interrupted ctr pull.)
ctrc snapshots --snapshotter accel ls | grep -q extract- && fail "an extract snapshot was left behind"
ctrc leases ls -q | grep -q accelctl-pull && fail "the failed pull's lease was left behind"
ctrc images ls -q | grep -q "e2e/bad:v1" && fail "the failed pull created an image record"

echo "== two pulls of one image at once both succeed"
build_busybox_image "$ENV_TMP/oci:race"
for i in 1 2 3; do
  mkdir -p "$ENV_TMP/race-$i/r$i"
  head -c $((3 << 20)) /dev/urandom > "$ENV_TMP/race-$i/r$i/blob"
  add_layer "$ENV_TMP/oci:race" "$ENV_TMP/race-$i"
done
push_image "$ENV_TMP/oci:race" e2e/race:v1
pull "$REGISTRY/e2e/race:v1" > "$ENV_TMP/race1.out" 2>&1 & p1=$!
pull "$REGISTRY/e2e/race:v1" > "$ENV_TMP/race2.out" 2>&1 & p2=$!
wait "$p1" || fail "first concurrent pull failed: $(cat "$ENV_TMP/race1.out")"
wait "$p2" || fail "second concurrent pull failed: $(cat "$ENV_TMP/race2.out")"
cat "$ENV_TMP/race1.out" "$ENV_TMP/race2.out"
out=$(ctrc run --rm --snapshotter accel "$REGISTRY/e2e/race:v1" c5 sh -c 'cat /r1/blob /r2/blob /r3/blob | wc -c')
[[ $out == $((9 << 20)) ]] || fail "race image: container saw [$out]"
ctrc images rm --sync "$REGISTRY/e2e/race:v1" > /dev/null

echo "== an interrupted pull (SIGTERM mid-download) leaves nothing behind"
# (SIGTERM: bash starts background jobs with SIGINT ignored.)
build_busybox_image "$ENV_TMP/oci:slow"
mkdir -p "$ENV_TMP/slow-l2/s"
head -c $((2 << 20)) /dev/urandom > "$ENV_TMP/slow-l2/s/blob"
add_layer "$ENV_TMP/oci:slow" "$ENV_TMP/slow-l2"
push_image "$ENV_TMP/oci:slow" e2e/slow:v1
# A proxy that sends the first 500 kB of a big layer blob, then nothing.
pport=$(free_port)
python3 "$ENV_TOP/tests/e2e/fault_proxy.py" --port "$pport" --upstream "$REGISTRY" \
  --plan stall:500000:60,stall:500000:60 --lifetime 120 &
ENV_PIDS+=($!)
wait_for "fault proxy" curl -fsS "http://127.0.0.1:$pport/v2/"
slow=127.0.0.1:$pport/e2e/slow:v1
# The binary itself in the background (not a shell function), so $! is its PID.
"$ACCEL_BIN_DIR/accelctl" pull --address "$CTD_SOCK" --namespace e2e --plain-http "$slow" \
  > "$ENV_TMP/slow.out" 2> "$ENV_TMP/slow.err" & ppid=$!
wait_until "the slow pull's lease" '[[ -n $(ctrc leases ls -q | grep accelctl-pull) ]]'
wait_until "the slow pull's download" '[[ -n $(ctrc content active | tail -n +2) ]]'
kill -TERM "$ppid"
rc=0; wait "$ppid" || rc=$?
cat "$ENV_TMP/slow.out" "$ENV_TMP/slow.err"
[[ $rc == 143 ]] || fail "interrupted pull exited $rc, want 143"
grep -q 'interrupted (Terminated); removing what it wrote' "$ENV_TMP/slow.err" || fail "no interrupt message"
# Nothing else: what failed in the pull while the handler removed its lease is not news.
[[ $(grep -c 'accelctl: pull:' "$ENV_TMP/slow.err") == 1 ]] || fail "more than the interrupt message: $(cat "$ENV_TMP/slow.err")"
ctrc leases ls -q | grep -q accelctl-pull && fail "the interrupted pull's lease was left behind"
[[ -z $(ctrc content active | tail -n +2) ]] || fail "partial downloads left: $(ctrc content active)"
ctrc snapshots --snapshotter accel ls | grep -q extract- && fail "an extract snapshot was left behind"
for d in $(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/e2e/slow:v1" | jq -r '.layers[].digest'); do
  ctrc content ls -q | grep -qx "$d" && fail "layer blob $d of the interrupted pull was left in the content store"
done
ctrc images ls -q | grep -q "e2e/slow:v1" && fail "the interrupted pull created an image record"

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
echo "== removing the pulled images lets containerd's GC remove every snapshot"
ctrc images rm --sync "$dst" "$esgz" "$plain" "$REGISTRY/e2e/zstd:v1" > /dev/null
ctrc content prune references > /dev/null 2>&1 || true
ctrc images ls -q | grep -q . && fail "images left: $(ctrc images ls -q)"
left=$(ctrc snapshots --snapshotter accel ls | tail -n +2)
# The committed layers below the corrupted one have no image; a lease-less
# GC pass removes them too.
[[ -z $left ]] || fail "snapshots left after the images were removed: $left"
wait_until "the layers unmounted" '[[ $(fuse_mounts accel) == 0 ]]'

if pull --parallel 0 "$plain" > /dev/null 2> "$ENV_TMP/par.err"; then fail "--parallel 0 accepted"; fi
grep -q -- '--parallel wants a number from 1 to 16' "$ENV_TMP/par.err" || fail "unclear error: $(cat "$ENV_TMP/par.err")"
echo "== a snapshotter that is configured but not running fails clearly"
stop_pid "$ACCEL_PID"; forget_pid "$ACCEL_PID"
if pull "$plain" > /dev/null 2> "$ENV_TMP/down.err"; then fail "pull with the daemon stopped succeeded"; fi
cat "$ENV_TMP/down.err"
grep -q 'snapshotter "accel" is not answering' "$ENV_TMP/down.err" || fail "unclear error: $(cat "$ENV_TMP/down.err")"
echo "PASS test_accelctl_pull"
