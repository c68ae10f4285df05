#!/usr/bin/env bash
# Kubernetes CRI end to end: containerd's CRI plugin (the API kubelet uses)
# with accel as its snapshotter, driven by cri_client (a minimal CRI
# runtime.v1 client; there is no kubelet or crictl here). Host-network pods,
# so no CNI plugin is needed; the pause image is a busybox `sleep 3600`
# pushed to the private registry. Checks:
#   - a preloaded target (accelctl convert --store): CRI PullImage fetches no
#     layer blob, the layers are FUSE mounts, a pod container reads them;
#   - an eStargz image (converted by ctr-remote): the layers are lazy FUSE
#     mounts, the container runs after fetching a small part of the big layer;
#   - a plain image: downloaded and unpacked as usual, runs, exit codes pass
#     through;
#   - every sandbox and container the test made is gone at the end.
source "$(dirname "$0")/env.sh"
env_init cri
start_registry
STORE=$ENV_TMP/store
start_accel_lazy --store "$STORE"

# The CRI plugin's own hosts directory: plain HTTP for the private registry.
CRI_HOSTS=$(cri_hosts_dir "$REGISTRY")
sum_gets() { local d; for d in "$@"; do blob_gets "$d"; done | paste -sd+ | bc; }

echo "== containerd with the CRI plugin, accel as its snapshotter"
[[ -x $ACCEL_BIN_DIR/cri_client ]] || fail "no $ACCEL_BIN_DIR/cri_client (build the tests)"
# The sandbox (pause) image: busybox sleeping; a marker file keeps its layer
# distinct from the other images' busybox layers.
echo pause > "$ENV_TMP/pause-marker"
build_busybox_image "$ENV_TMP/oci:pause" "$ENV_TMP/pause-marker=/pause-marker"
umoci config --image "$ENV_TMP/oci:pause" --config.cmd sleep --config.cmd 3600
push_image "$ENV_TMP/oci:pause" e2e/pause:1
start_containerd_cri "$CRI_HOSTS"
# The CRI plugin answers once it has initialized; pulling the sandbox image
# now also keeps it out of the measurements below.
wait_for "the CRI plugin (pull of the pause image)" cri pull "$REGISTRY/e2e/pause:1"
out=$(cri run "$REGISTRY/e2e/pause:1" sh -c 'echo out; echo err >&2; exit 7' 2> "$ENV_TMP/err") && rc=0 || rc=$?
[[ $rc == 7 && $out == out && $(cat "$ENV_TMP/err") == err ]] ||
  fail "pod with the pause image: exit $rc (want 7), stdout [$out], stderr [$(cat "$ENV_TMP/err")]"

echo "== a preloaded target image: CRI pull fetches no layer, layers are FUSE mounts"
build_fidelity_image "$ENV_TMP/oci:app"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
dst=$REGISTRY/e2e/app:v1-acc
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert.out" ||
  fail "convert failed: $(cat "$ENV_TMP/convert.out")"
grep -q "converted $src to $dst" "$ENV_TMP/convert.out" || fail "convert summary missing"
manifest=$(skopeo inspect --raw --tls-verify=false "docker://$dst")
layers=$(jq -r '.layers[].digest' <<< "$manifest")
mounts0=$(fuse_mounts)
before=$(sum_gets $layers)
cri pull "$dst" > /dev/null || fail "CRI pull of $dst failed"
after=$(sum_gets $layers)
[[ $after == "$before" ]] || fail "layer blobs were downloaded ($before -> $after GETs)"
[[ $(blob_gets "$(jq -r .config.digest <<< "$manifest")") -gt 0 ]] ||
  fail "the registry log shows no blob GETs at all: cannot tell what was fetched"
[[ $(($(fuse_mounts) - mounts0)) == 3 ]] || fail "expected 3 new FUSE layer mounts, got $(($(fuse_mounts) - mounts0))"
[[ $(mounted_kind store) == 3 ]] || fail "accel status: $(mounted_kind store) store layers mounted (want 3)"
out=$(cri run "$dst" cat /data/file /opq/new-file) || fail "pod on $dst failed: [$out]"
[[ $out == $'regular\nnew' ]] || fail "pod on $dst read [$out]"
out=$(cri run "$dst" sh -c 'test ! -e /lower-file && ls /opq && wc -c < /data/big') || fail "pod on $dst failed: [$out]"
[[ $out == $'new-file\n1048577' ]] || fail "pod on $dst (whiteouts, big file) read [$out]"
[[ $(sum_gets $layers) == "$before" ]] || fail "running the pods downloaded layer blobs"
echo "  $(wc -l <<< "$layers") layers mounted from the store, 0 layer GETs"

echo "== an eStargz image (ctr-remote): lazy FUSE mounts, partial fetch"
build_busybox_image "$ENV_TMP/oci:lazy"
l=$ENV_TMP/lazy-l2; mkdir -p "$l/data" "$l/etc"
head -c $((24 << 20)) /dev/urandom > "$l/data/big.bin"
echo "small file" > "$l/etc/small.txt"
add_layer "$ENV_TMP/oci:lazy" "$l"
push_image "$ENV_TMP/oci:lazy" e2e/lazy:v1
esgz=$REGISTRY/e2e/lazy:v1-esgz
estargz_with_ctr_remote "$REGISTRY/e2e/lazy:v1" "$esgz"
manifest=$(skopeo inspect --raw --tls-verify=false "docker://$esgz")
big_layer=$(jq -r '.layers | max_by(.size) | .digest' <<< "$manifest")
big_size=$(jq -r '.layers | max_by(.size) | .size' <<< "$manifest")
jq -e '.layers[0].annotations["containerd.io/snapshot/stargz/toc.digest"]' <<< "$manifest" >/dev/null ||
  fail "ctr-remote did not annotate the TOC digest"
mounts0=$(fuse_mounts)
cri pull "$esgz" > /dev/null || fail "CRI pull of $esgz failed"
[[ $(($(fuse_mounts) - mounts0)) == 2 ]] || fail "expected 2 new FUSE layer mounts, got $(($(fuse_mounts) - mounts0))"
[[ $(mounted_kind estargz) == 2 ]] || fail "accel status: $(mounted_kind estargz) estargz layers mounted (want 2)"
out=$(cri run "$esgz" cat /etc/small.txt) || fail "pod on $esgz failed: [$out]"
[[ $out == "small file" ]] || fail "pod on $esgz read [$out]"
fetched=$(registry_blob_bytes "$big_layer")
echo "  big layer: ${fetched:-0} of $big_size bytes fetched"
((${fetched:-0} > 0)) || fail "no range request seen for the big layer (log format?)"
((fetched * 5 < big_size)) || fail "fetched $fetched of $big_size bytes (want < 20%)"

echo "== a plain image: downloaded and unpacked, runs"
echo plain > "$ENV_TMP/plain.txt"
build_busybox_image "$ENV_TMP/oci:plain" "$ENV_TMP/plain.txt=/plain.txt"
push_image "$ENV_TMP/oci:plain" e2e/plain:1
layers=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/e2e/plain:1" | jq -r '.layers[].digest')
mounts0=$(fuse_mounts)
snaps0=$(ctrk snapshots --snapshotter accel ls | wc -l)
cri pull "$REGISTRY/e2e/plain:1" > /dev/null || fail "CRI pull of the plain image failed"
# Unpacked into accel (one new committed snapshot), not by another snapshotter.
[[ $(ctrk snapshots --snapshotter accel ls | wc -l) == $((snaps0 + 1)) ]] ||
  fail "the plain image's layer is not an accel snapshot: $(ctrk snapshots --snapshotter accel ls)"
[[ $(sum_gets $layers) -gt 0 ]] || fail "the plain image's layer was not downloaded"
[[ $(fuse_mounts) == "$mounts0" ]] || fail "the plain image got FUSE mounts"
out=$(cri run "$REGISTRY/e2e/plain:1" cat /plain.txt) || fail "pod on the plain image failed: [$out]"
[[ $out == plain ]] || fail "pod on the plain image read [$out]"

echo "== no sandbox or container left behind"
[[ -z $(ctrk containers ls -q) ]] || fail "CRI containers left: $(ctrk containers ls -q | tr '\n' ' ')"
[[ -z $(ctrk tasks ls -q) ]] || fail "CRI tasks left: $(ctrk tasks ls -q | tr '\n' ' ')"
echo "PASS test_cri"
