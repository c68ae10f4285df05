#!/usr/bin/env bash
# Preloaded images end to end: accelctl convert streams a multi-layer image
# (every entry type, whiteouts, an opaque dir) into a shared store and pushes
# the -acc target; ctr-remote rpull through containerd takes the remote path
# (no layer blob fetched, layers are FUSE mounts); a container reads files of
# every layer; the mounted tree equals the source image unpacked by the
# built-in overlayfs snapshotter; a second daemon on the same store serves
# it too; a containerd without accel still pulls and runs the target; the
# daemon remounts after a restart; store ls/inspect/verify/rm/gc behave;
# hostile layers leave the store unchanged.
source "$(dirname "$0")/env.sh"
env_init store_convert
start_registry
STORE=$ENV_TMP/store
start_accel --store "$STORE"
# A second daemon (own root and socket, same store) stands in for a second
# node; containerd knows it as snapshotter "accel2".
ACCEL2_SOCK=$ENV_TMP/accel2.sock
"$ACCEL_BIN_DIR/accel-snapshotter" --root "$ENV_TMP/accel2" --address "$ACCEL2_SOCK" \
  --store "$STORE" --log-level debug >> "$ENV_TMP/accel2.log" 2>&1 &
ENV_PIDS+=($!)
wait_for accel2 "$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL2_SOCK" --timeout 1
CTD_EXTRA_PROXY="accel2=$ACCEL2_SOCK" start_containerd
rpull() { ctr-remote --address "$CTD_SOCK" --namespace e2e images rpull --plain-http "$@" >/dev/null; }

build_fidelity_image "$ENV_TMP/oci:app"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
dst=$REGISTRY/e2e/app:v1-acc

echo "== convert"
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert.out" ||
  fail "convert failed: $(cat "$ENV_TMP/convert.out")"
grep -q "converted $src to $dst" "$ENV_TMP/convert.out" || fail "convert summary missing"
[[ $(grep -c 'stored:' "$ENV_TMP/convert.out") == 3 ]] || fail "expected 3 layers stored: $(cat "$ENV_TMP/convert.out")"
# A second conversion finds every layer in the store.
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert2.out"
[[ $(grep -c 'already in the store' "$ENV_TMP/convert2.out") == 3 ]] || fail "rerun did not skip layers"
accelctl store ls --json --store "$STORE" > "$ENV_TMP/ls.json"
python3 - "$ENV_TMP/ls.json" "$dst" <<'PY' || fail "store ls --json is wrong: $(cat "$ENV_TMP/ls.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert [i["target"] for i in d["images"]] == [sys.argv[2]], d["images"]
assert d["images"][0]["complete"] and len(d["images"][0]["layers"]) == 3
assert len(d["layers"]) == 3 and all(l["images"] == 1 and l["entries"] > 0 for l in d["layers"])
PY
accelctl store verify --store "$STORE" | grep -q "verified 3 layer(s) and 1 image(s): 0 problem(s)" ||
  fail "verify of a good store failed"
# The target manifest carries the layer annotations and the same blobs.
skopeo inspect --raw --tls-verify=false "docker://$dst" > "$ENV_TMP/target.json"
skopeo inspect --raw --tls-verify=false "docker://$src" > "$ENV_TMP/source.json"
python3 - "$ENV_TMP/source.json" "$ENV_TMP/target.json" "$(accelctl store ls --json --store "$STORE" | jq -r .id)" <<'PY' || fail "target manifest is wrong"
import json, sys
s, t, store_id = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert [l["digest"] for l in s["layers"]] == [l["digest"] for l in t["layers"]]
assert s["config"] == t["config"]
for l in t["layers"]:
    a = l["annotations"]
    assert a["containerd.io/snapshot/accel.diff-id"].startswith("sha256:")
    assert a["containerd.io/snapshot/accel.store-id"] == store_id
PY
layers=$(jq -r '.layers[].digest' "$ENV_TMP/source.json")

echo "== pull the target through accel (remote path)"
before=$(for d in $layers; do blob_gets "$d"; done | paste -sd+ | bc)
rpull --snapshotter accel "$dst"
after=$(for d in $layers; do blob_gets "$d"; done | paste -sd+ | bc)
[[ $after == "$before" ]] || fail "layer blobs were downloaded ($before -> $after GETs)"
# The registry log does record blob GETs (the config was fetched), so the
# count above can see a download.
[[ $(blob_gets "$(jq -r .config.digest "$ENV_TMP/source.json")") -gt 0 ]] ||
  fail "the registry log shows no blob GETs at all: cannot tell what was fetched"
for d in $layers; do
  ! ctrc content ls -q | grep -qx "$d" || fail "layer blob $d is in containerd's content store"
done
[[ $(fuse_mounts accel) == 3 ]] || fail "expected 3 FUSE layer mounts, got $(fuse_mounts accel)"
accelctl status --address "$ACCEL_SOCK" > "$ENV_TMP/status.json"
python3 - "$ENV_TMP/status.json" "$dst" <<'PY' || fail "status is wrong: $(cat "$ENV_TMP/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["store"]["reachable"] and len(d["store"]["id"]) == 32
assert len(d["mounted_layers"]) == 3 and all(m["kind"] == "store" for m in d["mounted_layers"])
assert [(i["target"], i["state"]) for i in d["images"]] == [(sys.argv[2], "mounted")], d["images"]
PY

echo "== run a container that reads every layer"
out=$(ctrc run --rm --snapshotter accel "$dst" c1 sh -c \
  'cat /data/file /data/hardlink /opq/new-file; sha256sum /data/big | cut -c1-16; ls /opq; test ! -e /lower-file && echo whiteout-ok; busybox | head -1 | cut -c1-7')
want_big=$(sha256sum "$ENV_TMP/fid-l2/data/big" | cut -c1-16)
expected=$(printf 'regular\nregular\nnew\n%s\nnew-file\nwhiteout-ok\nBusyBox' "$want_big")
[[ $out == "$expected" ]] || fail "container output: got [$out], want [$expected]"

echo "== the mounted tree equals the source unpacked by overlayfs"
ctrc images pull --plain-http --snapshotter overlayfs "$src" >/dev/null
mount_top_view overlayfs "$ENV_TMP/tree-overlayfs"
mount_top_view accel "$ENV_TMP/tree-accel"
[[ $(stat -c %u:%g "$ENV_TMP/tree-accel/data/owned") == 1234:5678 ]] || fail "owner lost"
python3 "$(dirname "$0")/treediff.py" "$ENV_TMP/tree-overlayfs" "$ENV_TMP/tree-accel" ||
  fail "trees differ (A = overlayfs of the source, B = accel from the store)"
umount "$ENV_TMP/tree-overlayfs" "$ENV_TMP/tree-accel"

echo "== annotations that do not match the config's layers are not trusted"
# The target manifest with the diff-id annotations of layers 2 and 3
# swapped: those layers' chain ids no longer match, so accel2 downloads them
# rather than committing a store layer under another layer's name.
jq -c '.layers[1].annotations["containerd.io/snapshot/accel.diff-id"] as $a |
       .layers[1].annotations["containerd.io/snapshot/accel.diff-id"] = .layers[2].annotations["containerd.io/snapshot/accel.diff-id"] |
       .layers[2].annotations["containerd.io/snapshot/accel.diff-id"] = $a' "$ENV_TMP/target.json" > "$ENV_TMP/lie.json"
curl -fsS -X PUT -H "Content-Type: $(jq -r '.mediaType // "application/vnd.oci.image.manifest.v1+json"' "$ENV_TMP/target.json")" --data-binary @"$ENV_TMP/lie.json" \
  "http://$REGISTRY/v2/e2e/app/manifests/v1-lie" >/dev/null
ctr-remote --address "$CTD_SOCK" --namespace lie images rpull --plain-http --snapshotter accel2 "$REGISTRY/e2e/app:v1-lie" >/dev/null
[[ $(fuse_mounts accel2) == 1 ]] || fail "mismatched annotations: $(fuse_mounts accel2) store mounts (want only the bottom layer)"
grep -q "does not match the layer's chain id" "$ENV_TMP/accel2.log" || fail "mismatch not logged"
out=$(ctr --address "$CTD_SOCK" --namespace lie run --rm --snapshotter accel2 "$REGISTRY/e2e/app:v1-lie" lie1 cat /data/file /opq/new-file)
[[ $out == $'regular\nnew' ]] || fail "lying image read [$out]"
# Remove it: containerd shares committed snapshots of one chain id across
# namespaces, so the second node below would otherwise reuse these
# (downloaded) ones, and GC would unmount its store layers at a moment that
# depends on timing.
ctr --address "$CTD_SOCK" --namespace lie images rm --sync "$REGISTRY/e2e/app:v1-lie" >/dev/null
wait_until "the lying image's snapshots removed" \
  '[[ -z $(ctr --address "$CTD_SOCK" --namespace lie snapshots --snapshotter accel2 ls | tail -n +2) ]]'
wait_until "the lying image's store layer unmounted" '[[ $(fuse_mounts accel2) == 0 ]]'

echo "== a second node (daemon accel2, same store)"
rpull --snapshotter accel2 "$dst"
[[ $(fuse_mounts accel2) == 3 ]] || fail "second daemon: $(fuse_mounts accel2) store mounts, want 3: $(grep accel2 /proc/mounts)"
out=$(ctrc run --rm --snapshotter accel2 "$dst" c2 cat /opq/new-file)
[[ $out == new ]] || fail "second daemon: container read [$out]"

echo "== restart: layers are mounted again before the first RPC"
stop_accel
start_accel --store "$STORE"
[[ $(fuse_mounts accel) == 3 ]] || fail "after restart: $(fuse_mounts accel) FUSE mounts"
out=$(ctrc run --rm --snapshotter accel "$dst" c4 cat /data/file)
[[ $out == regular ]] || fail "after restart: container read [$out]"

echo "== store rm refuses while mounted"
if accelctl store rm --store "$STORE" --address "$ACCEL_SOCK" "$dst" 2> "$ENV_TMP/rm.err"; then
  fail "store rm removed layers that are mounted"
fi
grep -q "mounted on this node" "$ENV_TMP/rm.err" || fail "rm refusal message: $(cat "$ENV_TMP/rm.err")"
accelctl store ls --json --store "$STORE" | jq -e '.images | length == 1' >/dev/null || fail "refused rm changed the store"

echo "== without accel, the target pulls and runs like any image"
ctr_plain() { ctr --address "$CTD_SOCK" --namespace plain "$@"; }
ctr_plain images pull --plain-http --snapshotter overlayfs "$dst" >/dev/null
out=$(ctr_plain run --rm --snapshotter overlayfs "$dst" c3 cat /data/file)
[[ $out == regular ]] || fail "overlayfs run of the target read [$out]"

echo "== containerd's gc unmounts the layers; then store rm removes them"
for sn in accel overlayfs; do
  for v in $(ctrc snapshots --snapshotter "$sn" ls | awk '$1 ~ /^view-/ {print $1}'); do
    ctrc snapshots --snapshotter "$sn" rm "$v"
  done
done
ctrc images rm --sync "$dst" "$src" >/dev/null
ctr --address "$CTD_SOCK" --namespace lie images rm --sync "$REGISTRY/e2e/app:v1-lie" >/dev/null
wait_until "layers unmounted" '[[ $(fuse_mounts accel) == 0 ]]'
wait_until "layers unmounted (accel2)" '[[ $(fuse_mounts accel2) == 0 ]]'
accelctl store rm --store "$STORE" --address "$ACCEL_SOCK" "$dst" > "$ENV_TMP/rm.out" ||
  fail "store rm failed: $(cat "$ENV_TMP/rm.out")"
grep -q "3 layer(s) removed" "$ENV_TMP/rm.out" || fail "rm output: $(cat "$ENV_TMP/rm.out")"
[[ -z $(ls "$STORE/layers/sha256") ]] || fail "layers left after rm"
# Convert again for the checks below.
accelctl convert --plain-http --store "$STORE" "$src" > /dev/null

echo "== hostile layers are rejected and leave the store unchanged"
snapshot() { (cd "$STORE" && find . -path ./tmp -prune -o -print | sort; ls tmp); }
snapshot > "$ENV_TMP/store.before"
python3 "$(dirname "$0")/hostile_image.py" "$ENV_TMP/hostile"
for tag in dotdot absolute hardlink-escape truncated-gzip wrong-diffid; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$ENV_TMP/hostile:$tag" "docker://$REGISTRY/e2e/hostile:$tag"
  if accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/hostile:$tag" > /dev/null 2> "$ENV_TMP/hostile.err"; then
    fail "convert accepted hostile layer $tag"
  fi
  echo "  $tag: $(cat "$ENV_TMP/hostile.err")"
  snapshot | diff - "$ENV_TMP/store.before" >/dev/null || fail "hostile layer $tag changed the store"
done
grep -q '\.\.' <<< "$(accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/hostile:dotdot" 2>&1)" ||
  fail "path escape error does not name the path"

echo "== gc keeps referenced layers and removes unreferenced ones"
accelctl store gc --store "$STORE" --address "$ACCEL_SOCK" --grace 0 | grep -q "gc: 0 layer(s)" || fail "gc removed referenced layers"
python3 - "$ENV_TMP/orphan" <<'PY'
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    info = tarfile.TarInfo("orphan"); data = b"orphan\n"; info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
open(sys.argv[1], "wb").write(buf.getvalue())
PY
# An orphan layer: converted by an image whose record is then removed.
orphan_oci=$ENV_TMP/oci-orphan
umoci init --layout "$orphan_oci" && umoci new --image "$orphan_oci:o"
umoci raw add-layer --image "$orphan_oci:o" "$ENV_TMP/orphan"
push_image "$orphan_oci:o" e2e/orphan:o
accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/orphan:o" > /dev/null
rm "$STORE"/images/$(printf '%s' "$REGISTRY/e2e/orphan:o-acc" | sha256sum | cut -c1-64).json
accelctl store gc --store "$STORE" --address "$ACCEL_SOCK" --grace 0 > "$ENV_TMP/gc.out"
grep -q "gc: 1 layer(s)" "$ENV_TMP/gc.out" || fail "gc output: $(cat "$ENV_TMP/gc.out")"
accelctl store verify --store "$STORE" | grep -q "verified 3 layer(s)" || fail "gc broke the store"

echo "== an unreachable store: Prepare falls back to a download, status says why"
mv "$STORE" "$STORE.away"
rpull --snapshotter accel "$dst"
[[ $(fuse_mounts accel) == 0 ]] || fail "layers mounted from an unreachable store"
out=$(ctrc run --rm --snapshotter accel "$dst" c5 cat /opq/new-file)
[[ $out == new ]] || fail "fallback pull: container read [$out]"
accelctl status --address "$ACCEL_SOCK" | jq -e '.store.reachable == false and (.store.error | length > 0)' >/dev/null ||
  fail "status does not report the unreachable store"
grep -q 'store unreachable' "$ENV_TMP/accel.log" || fail "daemon did not log the unreachable store"
mv "$STORE.away" "$STORE"
accelctl status --address "$ACCEL_SOCK" | jq -e '.store.reachable == true' >/dev/null ||
  fail "status does not see the store come back"

echo "== verify finds a corrupted file"
layer_dir=$(ls -d "$STORE"/layers/sha256/* | head -1)
printf 'X' | dd of="$layer_dir/data" bs=1 seek=0 conv=notrunc status=none
if accelctl store verify --store "$STORE" > "$ENV_TMP/verify.out"; then fail "verify missed corruption"; fi
grep -q PROBLEM "$ENV_TMP/verify.out" || fail "verify output: $(cat "$ENV_TMP/verify.out")"
echo "PASS test_store_convert"
