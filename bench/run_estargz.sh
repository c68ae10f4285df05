#!/usr/bin/env bash
# Lazy eStargz images: start time and bytes fetched, and the cost of
# laziness once everything is cached, each against its baseline in the
# same run.
#
#   bench/run_estargz.sh [MIB]     (default 512: the image's uncompressed size)
#
# The image: busybox plus a layer of MIB MiB in 64 files of random-ish data
# and one small file the container reads. It is converted to eStargz by
# Debian's ctr-remote. Page caches are dropped before every timed step.
#
# Goals (issue 5): lazy pull+run < 0.2x of a full pull+run with overlayfs of
# the same eStargz image, with < 20% of the layer bytes fetched before the
# command ends; reading the whole image through the lazy mount after the
# background fetch >= 0.9x of reading it through a store mount.
set -euo pipefail
MIB=${1:-512}
source "$(dirname "$0")/lib.sh"
env_init bench-estargz
start_registry
STORE=$ENV_TMP/store
start_accel_lazy --store "$STORE" --log-level "${BENCH_LOG_LEVEL:-warn}"
start_containerd
row() { printf '%-50s %12s %12s %8s   %s\n' "$@"; }
blob_bytes() { registry_blob_bytes "$1"; }

echo "building a ${MIB} MiB image and converting it with ctr-remote ..."
build_busybox_image "$ENV_TMP/oci:app"
l=$ENV_TMP/l-data; mkdir -p "$l/data" "$l/etc"
data_files "$l/data" "$MIB" 64
echo "hello" > "$l/etc/small.txt"
add_layer "$ENV_TMP/oci:app" "$l"
rm -rf "$l"
push_image "$ENV_TMP/oci:app" bench/app:v1
src=$REGISTRY/bench/app:v1
esgz=$REGISTRY/bench/app:v1-esgz
estargz_with_ctr_remote "$src" "$esgz"
manifest=$(skopeo inspect --raw --tls-verify=false "docker://$esgz")
big=$(jq -r '.layers | max_by(.size) | .digest' <<< "$manifest")
big_size=$(jq -r '.layers | max_by(.size) | .size' <<< "$manifest")
run_small() { ctrc run --rm --snapshotter "$1" "$2" "bench-$RANDOM" cat /etc/small.txt >/dev/null; }

echo "full pull + run with overlayfs ..."
drop_caches
t0=$(now)
ctrc images pull --plain-http --snapshotter overlayfs "$esgz" >/dev/null
run_small overlayfs "$esgz"
t1=$(now)
full_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
ctrc images rm "$esgz" >/dev/null
ctrc content prune references >/dev/null 2>&1 || true

echo "lazy pull + run through accel ..."
before=$(blob_bytes "$big")
drop_caches
t0=$(now)
accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$esgz" >/dev/null
run_small accel "$esgz"
t1=$(now)
lazy_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
fetched=$(( $(blob_bytes "$big") - before ))
fetched_pct=$(python3 -c "print(f'{100 * $fetched / $big_size:.2f}')")

echo "reading everything: lazy mount (all chunks cached) vs store mount ..."
lazy_mp=$(awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $1 ~ /^accel-estargz/ {print $2}' /proc/mounts |
  while read -r m; do if [[ -d $m/data ]]; then echo "$m"; fi; done)
# Fetch every chunk (what the background fetch does), then time cold reads.
find "$lazy_mp/data" -type f -exec cat {} + > /dev/null
accelctl convert --plain-http --store "$STORE" "$src" "$REGISTRY/bench/app:v1-acc" > /dev/null
accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$REGISTRY/bench/app:v1-acc" >/dev/null
store_mp=$(awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $1 ~ /^accel-store/ {print $2}' /proc/mounts |
  while read -r m; do if [[ -d $m/data ]]; then echo "$m"; fi; done)
[[ -n $lazy_mp && -n $store_mp ]] || fail "cannot find the mounts ($lazy_mp | $store_mp)"
read_all() { local t0 t1; drop_caches; t0=$(now); find "$1/data" -type f -exec cat {} + > /dev/null; t1=$(now); python3 -c "print(f'{$t1 - $t0:.3f}')"; }
store_read=$(read_all "$store_mp")
lazy_read=$(read_all "$lazy_mp")

echo
row "measure" "baseline" "accel" "ratio" "goal"
row "pull+run (s): lazy vs full overlayfs pull" "$full_s" "$lazy_s" "$(ratio "$lazy_s" "$full_s")" "< 0.2"
row "layer bytes fetched before the command ended" "$big_size" "$fetched" "${fetched_pct}%" "< 20%"
row "read all ${MIB} MiB cold (s): lazy (cached) vs store" "$store_read" "$lazy_read" "$(ratio "$store_read" "$lazy_read")" ">= 0.9"
