#!/usr/bin/env bash
# Lazy eStargz layers end to end: an image converted by a tool accel did not
# write (Debian's ctr-remote images convert --estargz) is pulled with
# ctr-remote rpull --snapshotter accel: the layers are FUSE mounts, the
# container runs after fetching only part of each blob, the tree equals the
# original image unpacked by overlayfs (no eStargz metadata shown), a
# corrupted chunk is EIO (never wrong bytes), reads recover after a registry
# outage, and a daemon restart remounts the layers.
source "$(dirname "$0")/env.sh"
env_init estargz_lazy
start_registry
# The daemon finds the registry's scheme through containerd's hosts.toml.
start_accel_lazy
start_containerd
ctr_remote() { ctr-remote --address "$CTD_SOCK" --namespace e2e "$@"; }
blob_bytes() { registry_blob_bytes "$1"; }

echo "== build an image with a big layer, convert it with ctr-remote"
build_busybox_image "$ENV_TMP/oci:app"
l=$ENV_TMP/l2; mkdir -p "$l/data" "$l/etc"
head -c $((24 << 20)) /dev/urandom > "$l/data/big.bin"
head -c $((6 << 20)) /dev/urandom > "$l/data/other.bin"
head -c $((6 << 20)) /dev/urandom > "$l/data/third.bin"
echo "small file" > "$l/etc/small.txt"
ln -s small.txt "$l/etc/link"
add_layer "$ENV_TMP/oci:app" "$l"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
esgz=$REGISTRY/e2e/app:v1-esgz
estargz_with_ctr_remote "$src" "$esgz"
manifest=$(skopeo inspect --raw --tls-verify=false "docker://$esgz")
layers=$(jq -r '.layers[].digest' <<< "$manifest")
big_layer=$(jq -r '.layers | max_by(.size) | .digest' <<< "$manifest")
big_size=$(jq -r '.layers | max_by(.size) | .size' <<< "$manifest")
jq -e '.layers[0].annotations["containerd.io/snapshot/stargz/toc.digest"]' <<< "$manifest" >/dev/null ||
  fail "ctr-remote did not annotate the TOC digest"

echo "== lazy pull and run"
ctr_remote images rpull --plain-http --snapshotter accel "$esgz" >/dev/null
[[ $(fuse_mounts) == 2 ]] || fail "expected 2 FUSE layer mounts, got $(fuse_mounts)"
grep -q 'mounted eStargz layer lazily' "$ENV_TMP/accel.log" || fail "no lazy mount logged"
out=$(ctrc run --rm --snapshotter accel "$esgz" c1 cat /etc/small.txt)
[[ $out == "small file" ]] || fail "container read [$out]"
fetched=$(blob_bytes "$big_layer")
echo "  big layer: $fetched of $big_size bytes fetched before the command finished"
((fetched * 5 < big_size)) || fail "fetched $fetched of $big_size bytes (want < 20%)"
((fetched > 0)) || fail "no range request seen for the big layer (log format?)"
accelctl status --address "$ACCEL_SOCK" | jq -e '[.mounted_layers[] | select(.kind == "estargz")] | length == 2' >/dev/null ||
  fail "status does not list the 2 lazy layers"

echo "== a corrupted chunk is an I/O error, not wrong bytes"
blob_file=$ENV_TMP/registry/docker/registry/v2/blobs/sha256/${big_layer:7:2}/${big_layer#sha256:}/data
cp "$blob_file" "$ENV_TMP/blob.orig"
# The middle of third.bin's chunks: find them in the TOC.
toc_digest=$(jq -r '.layers | max_by(.size) | .annotations["containerd.io/snapshot/stargz/toc.digest"]' <<< "$manifest")
offset=$(python3 - "$blob_file" <<'PY'
import gzip, io, json, struct, sys, tarfile, zlib
data = open(sys.argv[1], "rb").read()
footer = data[-51:]
toc_off = int(footer[16:32], 16)
raw = zlib.decompressobj(31).decompress(data[toc_off:])
toc = json.load(tarfile.open(fileobj=io.BytesIO(raw)).extractfile("stargz.index.json"))
def clean(name):
    return "/".join(p for p in name.split("/") if p not in ("", "."))
offs = [e["offset"] for e in toc["entries"] if clean(e.get("name", "")) == "data/third.bin" and e.get("offset")]
assert offs, "data/third.bin not in the TOC"
print(offs[len(offs) // 2] + 40)
PY
)
printf '\xff\xff\xff\xff' | dd of="$blob_file" bs=1 seek="$offset" conv=notrunc status=none
if ctrc run --rm --snapshotter accel "$esgz" c2 sh -c 'cat /data/third.bin > /dev/null' 2> "$ENV_TMP/c2.err"; then
  fail "a corrupted chunk was served"
fi
grep -q 'chunk failed verification' "$ENV_TMP/accel.log" || fail "corruption was not logged"
cp "$ENV_TMP/blob.orig" "$blob_file"
out=$(ctrc run --rm --snapshotter accel "$esgz" c3 sh -c 'sha256sum /data/third.bin | cut -c1-64')
[[ $out == "$(sha256sum "$l/data/third.bin" | cut -c1-64)" ]] || fail "third.bin after repair: [$out]"

echo "== registry outage: reads fail with EIO, then recover"
stop_registry
if ctrc run --rm --snapshotter accel "$esgz" c4 sh -c 'cat /data/other.bin > /dev/null' 2>/dev/null; then
  fail "read an unfetched file with the registry down"
fi
restart_registry
out=$(ctrc run --rm --snapshotter accel "$esgz" c5 sh -c 'sha256sum /data/other.bin | cut -c1-64')
[[ $out == "$(sha256sum "$l/data/other.bin" | cut -c1-64)" ]] || fail "other.bin after the outage: [$out]"

echo "== daemon restart: lazy layers are mounted again, the chunk cache is reused"
stop_accel
start_accel --config "$ENV_TMP/accel.toml"
[[ $(fuse_mounts) == 2 ]] || fail "after restart: $(fuse_mounts) FUSE mounts"
before=$(blob_bytes "$big_layer")
out=$(ctrc run --rm --snapshotter accel "$esgz" c6 sh -c 'sha256sum /data/other.bin | cut -c1-64')
[[ $out == "$(sha256sum "$l/data/other.bin" | cut -c1-64)" ]] || fail "other.bin after restart: [$out]"
after=$(blob_bytes "$big_layer")
(( after - before < 1 << 20 )) || fail "cached chunks were fetched again after restart ($before -> $after)"

echo "== (after the reads above) the tree equals the original image unpacked by overlayfs"
ctrc images pull --plain-http --snapshotter overlayfs "$src" >/dev/null
mount_top_view overlayfs "$ENV_TMP/tree-overlayfs"
mount_top_view accel "$ENV_TMP/tree-accel"
for name in stargz.index.json .prefetch.landmark .no.prefetch.landmark; do
  [[ ! -e $ENV_TMP/tree-accel/$name ]] || fail "eStargz metadata $name is visible"
done
python3 "$(dirname "$0")/treediff.py" "$ENV_TMP/tree-overlayfs" "$ENV_TMP/tree-accel" ||
  fail "trees differ (A = overlayfs of the original, B = accel lazily from eStargz)"

echo "== the eStargz image also pulls and runs with overlayfs"
ctr --address "$CTD_SOCK" --namespace plain images pull --plain-http --snapshotter overlayfs "$esgz" >/dev/null
out=$(ctr --address "$CTD_SOCK" --namespace plain run --rm --snapshotter overlayfs "$esgz" c7 cat /etc/small.txt)
[[ $out == "small file" ]] || fail "overlayfs run of the eStargz image read [$out]"
echo "PASS test_estargz_lazy"
