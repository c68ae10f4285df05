#!/usr/bin/env bash
# Preloaded images: start time, reads, metadata, convert throughput and
# memory, each against its baseline measured in the same run.
#
#   bench/run_store.sh [BIG_MIB] [SMALL_FILES]     (defaults 1024 and 50000)
#
# The image: busybox, a layer with one BIG_MIB file, a layer with
# SMALL_FILES small files in 100 directories, and a layer of 2,000 medium
# files (128 MiB). Page caches are dropped before every cold measurement.
#
# Start is `accelctl pull` + `ctr run sh -c :`; the same with ctr-remote
# rpull (stargz-snapshotter's client) is shown too.
#
# Goals (issue 4): start < 0.1x of overlayfs pull+run and < 1.5x of running
# an image already unpacked; reads warm >= 0.95x, cold sequential >= 0.8x,
# cold random >= 0.5x of reading the store file directly; metadata >= 0.5x
# of the same tree unpacked natively.
set -euo pipefail
BIG_MIB=${1:-1024}
SMALL_FILES=${2:-50000}
source "$(dirname "$0")/lib.sh"
env_init bench-store
start_registry
STORE=$ENV_TMP/store
start_accel --store "$STORE" --log-level ${BENCH_LOG_LEVEL:-warn}
start_containerd
row() { printf '%-44s %14s %14s %8s   %s\n' "$@"; }

echo "building the image (${BIG_MIB} MiB file, $SMALL_FILES small files) ..."
build_busybox_image "$ENV_TMP/oci:big"
l=$ENV_TMP/l-big; mkdir -p "$l"
# Compressible-but-not-trivial data: random 4 KiB blocks repeated, so gzip
# works but the bytes are not all alike.
python3 - "$l/big.bin" "$BIG_MIB" <<'PY'
import os, sys
blocks = [os.urandom(2048) * 2 for _ in range(256)]
with open(sys.argv[1], "wb") as f:
    for i in range(int(sys.argv[2]) * 256):
        f.write(blocks[(i * 7919) % 256])
PY
add_layer "$ENV_TMP/oci:big" "$l"
l=$ENV_TMP/l-small; mkdir -p "$l"
python3 - "$l" "$SMALL_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.makedirs(f"{root}/d{d:03d}", exist_ok=True)
for i in range(n):
    with open(f"{root}/d{i % 100:03d}/f{i:06d}.txt", "w") as f:
        f.write(f"file {i}\n" * (1 + i % 64))
PY
add_layer "$ENV_TMP/oci:big" "$l"
l=$ENV_TMP/l-medium; mkdir -p "$l/m"
python3 - "$l/m" <<'PY'
import os, sys
block = os.urandom(32768)
for i in range(2000):
    with open(f"{sys.argv[1]}/m{i:04d}", "wb") as f:
        f.write(block[i % 1000:] + block[: i % 1000] + block)
PY
add_layer "$ENV_TMP/oci:big" "$l"
push_image "$ENV_TMP/oci:big" bench/big:v1
rm -rf "$ENV_TMP"/l-* "$ENV_TMP/oci"
src=$REGISTRY/bench/big:v1
dst=$REGISTRY/bench/big:v1-acc

echo "converting ..."
drop_caches
t0=$(now)
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert.out"
t1=$(now)
unpacked_bytes=$(accelctl store ls --json --store "$STORE" | jq '[.layers[].data_bytes] | add')
convert_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
convert_mbs=$(python3 -c "print(f'{$unpacked_bytes / 1e6 / ($t1 - $t0):.1f}')")

run_true() { ctrc run --rm --snapshotter "$1" "$2" "bench-$RANDOM" /bin/sh -c :; }

echo "start time ..."
drop_caches
t0=$(now)
ctrc images pull --plain-http --snapshotter overlayfs "$src" >/dev/null
run_true overlayfs "$src"
t1=$(now)
overlay_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")

drop_caches
t0=$(now)
run_true overlayfs "$src"
t1=$(now)
local_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")

rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$ACCEL_PID/status")
drop_caches
t0=$(now)
accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$dst" >/dev/null
tp=$(now)
run_true accel "$dst"
t1=$(now)
accel_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
accel_pull_s=$(python3 -c "print(f'{$tp - $t0:.3f}')")
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$ACCEL_PID/status")
entries=$(accelctl store ls --json --store "$STORE" | jq '[.layers[].entries] | add')
mem_per_entry=$(python3 -c "print(f'{($rss_after - $rss_before) * 1024 / $entries:.0f}')")

# Where things are: the FUSE mount holding big.bin, the one holding the
# small files, the store's data file of the big layer, and the natively
# unpacked copy of the small-file layer (overlayfs snapshot).
fuse_big=$(awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $3 ~ /^fuse/ {print $2}' /proc/mounts |
  while read -r m; do if [[ -f $m/big.bin ]]; then echo "$m"; fi; done)
fuse_small=$(awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $3 ~ /^fuse/ {print $2}' /proc/mounts |
  while read -r m; do if [[ -d $m/d000 ]]; then echo "$m"; fi; done)
native_small=$(ls -d "$ENV_TMP"/ctd-root/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs |
  while read -r m; do if [[ -d $m/d000 ]]; then echo "$m"; fi; done)
big_size=$(stat -c %s "$fuse_big/big.bin")
store_data=$(for d in "$STORE"/layers/sha256/*; do
  if [[ $(stat -c %s "$d/data") == "$big_size" ]]; then echo "$d/data"; fi; done | head -1)
[[ -n $fuse_big && -n $fuse_small && -n $native_small && -n $store_data ]] ||
  fail "cannot find the mounts ($fuse_big | $fuse_small | $native_small | $store_data)"

rb() { "$ACCEL_BIN_DIR/read_bench" "$@" | awk '{print $1}'; }
echo "reads ..."
drop_caches; seq_cold_store=$(rb seq "$store_data")
seq_warm_store=$(rb seq "$store_data")
drop_caches; seq_cold_fuse=$(rb seq "$fuse_big/big.bin")
seq_warm_fuse=$(rb seq "$fuse_big/big.bin")
drop_caches; rand_cold_store=$(rb rand "$store_data" 20000)
rand_warm_store=$(rb rand "$store_data" 20000)
drop_caches; rand_cold_fuse=$(rb rand "$fuse_big/big.bin" 20000)
rand_warm_fuse=$(rb rand "$fuse_big/big.bin" 20000)

echo "metadata ..."
walk() { local t0 t1; t0=$(now); find "$1" -printf '%s %m %u %g %T@\n' > /dev/null; t1=$(now); python3 -c "print(f'{$t1 - $t0:.3f}')"; }
drop_caches; meta_cold_native=$(walk "$native_small")
meta_warm_native=$(walk "$native_small")
drop_caches; meta_cold_fuse=$(walk "$fuse_small")
meta_warm_fuse=$(walk "$fuse_small")

# The same start with stargz-snapshotter's client (ctr-remote rpull) in
# place of accelctl pull, after the image and its mounts are gone.
# (The source image shares the target's config, which holds the snapshots:
# remove both.)
ctrc images rm --sync "$src" "$dst" >/dev/null
fuse_left() { awk -v t="$ENV_TMP/accel/" 'index($2, t) == 1 && $3 ~ /^fuse/' /proc/mounts | wc -l; }
wait_until "the target's layers unmounted" '[[ $(fuse_left) == 0 ]]'
drop_caches
t0=$(now)
ctr-remote --address "$CTD_SOCK" --namespace e2e images rpull --plain-http --snapshotter accel "$dst" >/dev/null
run_true accel "$dst"
t1=$(now)
rpull_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")

echo
row "measure" "baseline" "accel" "ratio" "goal"
row "start: pull+run (s), vs overlayfs" "$overlay_s" "$accel_s" "$(ratio "$accel_s" "$overlay_s")" "< 0.1"
row "start: pull+run (s), vs unpacked locally" "$local_s" "$accel_s" "$(ratio "$accel_s" "$local_s")" "< 1.5"
echo "  (of the accel start: accelctl pull ${accel_pull_s}s, ctr run the rest)"
row "start: accelctl pull+run (s), vs ctr-remote rpull+run" "$rpull_s" "$accel_s" "$(ratio "$accel_s" "$rpull_s")" "-"
row "seq read cold (MB/s), vs store file" "$seq_cold_store" "$seq_cold_fuse" "$(ratio "$seq_cold_fuse" "$seq_cold_store")" ">= 0.8"
row "seq read warm (MB/s)" "$seq_warm_store" "$seq_warm_fuse" "$(ratio "$seq_warm_fuse" "$seq_warm_store")" ">= 0.95"
row "random 4K cold (IOPS)" "$rand_cold_store" "$rand_cold_fuse" "$(ratio "$rand_cold_fuse" "$rand_cold_store")" ">= 0.5"
row "random 4K warm (IOPS)" "$rand_warm_store" "$rand_warm_fuse" "$(ratio "$rand_warm_fuse" "$rand_warm_store")" ">= 0.95"
row "find+stat $SMALL_FILES files cold (s), vs native" "$meta_cold_native" "$meta_cold_fuse" "$(ratio "$meta_cold_native" "$meta_cold_fuse")" ">= 0.5"
row "find+stat warm (s)" "$meta_warm_native" "$meta_warm_fuse" "$(ratio "$meta_warm_native" "$meta_warm_fuse")" ">= 0.5"
echo
echo "convert: $((unpacked_bytes / 1048576)) MiB uncompressed in ${convert_s}s = ${convert_mbs} MB/s"
echo "daemon memory: $(( (rss_after - rss_before) / 1024 )) MiB for $entries mounted entries = ${mem_per_entry} bytes/entry"
