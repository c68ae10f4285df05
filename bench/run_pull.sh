#!/usr/bin/env bash
# accelctl pull against the pulls it replaces, in one run:
#   - a plain image (nothing for a remote snapshotter): `accelctl pull`
#     downloads and unpacks it; baseline `ctr images pull` into the same
#     snapshotter (overlayfs, then accel);
#   - the same image converted into the store (-acc): `accelctl pull` against
#     `ctr-remote images rpull` (stargz-snapshotter's client) and against the
#     plain `ctr images pull` of the source.
#
#   bench/run_pull.sh [MIB] [LAYERS]     (defaults 512 and 4)
#
# The image: busybox plus LAYERS layers of MIB/LAYERS MiB each (files of
# 4 MiB of compressible-but-not-trivial data). Page caches are dropped and
# every image and its content removed before each pull, so each one starts
# from nothing.
set -euo pipefail
MIB=${1:-512}
LAYERS=${2:-4}
source "$(dirname "$0")/lib.sh"
env_init bench-pull
start_registry
STORE=$ENV_TMP/store
start_accel --store "$STORE" --log-level "${BENCH_LOG_LEVEL:-warn}"
start_containerd
row() { printf '%-52s %10s %10s %8s\n' "$@"; }

echo "building the image ($MIB MiB in $LAYERS layers) ..."
build_busybox_image "$ENV_TMP/oci:img"
for ((i = 0; i < LAYERS; i++)); do
  l=$ENV_TMP/l-$i; mkdir -p "$l/layer$i"
  data_files "$l/layer$i" "$((MIB / LAYERS))" "$(( MIB / LAYERS / 4 > 0 ? MIB / LAYERS / 4 : 1 ))"
  add_layer "$ENV_TMP/oci:img" "$l"
  rm -rf "$l"
done
push_image "$ENV_TMP/oci:img" bench/pull:v1
rm -rf "$ENV_TMP/oci"
src=$REGISTRY/bench/pull:v1
dst=$src-acc
accelctl convert --plain-http --store "$STORE" "$src" > "$ENV_TMP/convert.out"

# timed LABEL CMD...: runs CMD from nothing (no images, no content, cold
# caches); prints the seconds; removes what it pulled afterwards.
reset() {
  local imgs
  imgs=$(ctrc images ls -q)
  [[ -z $imgs ]] || ctrc images rm --sync $imgs > /dev/null
  ctrc content prune references > /dev/null 2>&1 || true
  [[ -z $(ctrc content ls -q) ]] || fail "content left after removing every image: $(ctrc content ls -q)"
}
timed() {
  reset
  drop_caches
  local t0 t1
  t0=$(now)
  "$@" > "$ENV_TMP/pull.out" 2>&1 || fail "$* failed: $(cat "$ENV_TMP/pull.out")"
  t1=$(now)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

echo "pulling ..."
ctr_ovl=$(timed ctrc images pull --plain-http --snapshotter overlayfs "$src")
acc_ovl=$(timed accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http --snapshotter overlayfs "$src")
ctr_acc=$(timed ctrc images pull --plain-http --snapshotter accel "$src")
acc_acc=$(timed accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$src")
rpull_t=$(timed ctr-remote --address "$CTD_SOCK" --namespace e2e images rpull --plain-http --snapshotter accel "$dst")
acc_t=$(timed accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$dst")
grep -c 'mounted remotely' "$ENV_TMP/pull.out" > /dev/null || fail "the target's layers were not mounted remotely"
reset

echo
echo "image: $MIB MiB in $LAYERS layers + busybox; seconds from nothing, caches dropped"
row "measure" "baseline" "accelctl" "ratio"
row "plain image, overlayfs: ctr images pull vs accelctl" "$ctr_ovl" "$acc_ovl" "$(ratio "$acc_ovl" "$ctr_ovl")"
row "plain image, accel: ctr images pull vs accelctl" "$ctr_acc" "$acc_acc" "$(ratio "$acc_acc" "$ctr_acc")"
row "target image, accel: ctr-remote rpull vs accelctl" "$rpull_t" "$acc_t" "$(ratio "$acc_t" "$rpull_t")"
row "target (accelctl) vs plain pull (ctr, overlayfs)" "$ctr_ovl" "$acc_t" "$(ratio "$acc_t" "$ctr_ovl")"
