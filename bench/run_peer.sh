#!/usr/bin/env bash
# Head-to-head with the stated peer, containerd's stargz-snapshotter, in one
# run: both serve lazy eStargz images to the same containerd (two proxy
# snapshotters), from the same private registry, for the same image.
#
#   bench/run_peer.sh [MIB]     (default 256: the big layer's size)
#
# The peer is bench/peer/stargz_peer.go (Debian ships the library but not
# its daemon), built by bench/peer/build.sh if build/bin/stargz-peer is
# missing. The image: busybox plus a layer of MIB MiB in 64 files and one
# small file, converted to eStargz by Debian's ctr-remote (default options:
# 4 MiB chunks, no prioritized files, so neither side prefetches anything).
#
# Settings, chosen to make both sides do the same work:
# - accel: start_accel_lazy, i.e. background_fetch_mibps = 0 (its default is
#   20 MiB/s); chunk cache and everything else at defaults.
# - peer: no_background_fetch = true (its default fetches the whole layer in
#   the background); prefetch, caches (directory cache under its root), TOC
#   verification and 50000-byte range granularity at the library's defaults.
#   The registry is plain HTTP: a [resolver.host."127.0.0.1:PORT"] mirror
#   with insecure = true (the library also treats loopback hosts as HTTP).
# - both are pulled by the same client, `ctr-remote images rpull`
#   (--snapshotter stargz / accel); accel's own `accelctl pull` is timed on
#   a second variant of the image (another small file, so other blobs and
#   nothing cached) as an extra row.
# Page caches are dropped before every timed step. Measures:
# - pull + run `cat` of the small file (s) and the big layer's bytes the
#   registry sent by then;
# - reading every file of the big layer through the snapshotter's mount,
#   first as fetched from the registry (lazy reads), then again with all
#   data local (each side's on-disk cache; page cache dropped), and the
#   layer bytes fetched in total.
set -euo pipefail
MIB=${1:-256}
source "$(dirname "$0")/lib.sh"
PEER_BIN=${PEER_BIN:-$ACCEL_BIN_DIR/stargz-peer}
if [[ ! -x $PEER_BIN ]]; then
  ACCEL_BUILD_DIR=$(dirname "$ACCEL_BIN_DIR") bash "$ENV_TOP/bench/peer/build.sh"
fi
command -v ctr-remote >/dev/null || { echo "run_peer.sh: needs ctr-remote (apt-get install stargz-snapshotter)" >&2; exit 1; }

env_init bench-peer
start_registry
start_accel_lazy --log-level "${BENCH_LOG_LEVEL:-warn}"

PEER_ROOT=$ENV_TMP/stargz
PEER_SOCK=$ENV_TMP/stargz.sock
cat > "$ENV_TMP/stargz.toml" <<TOML
no_background_fetch = true
[resolver.host."$REGISTRY"]
  mirrors = [{ host = "$REGISTRY", insecure = true }]
TOML
"$PEER_BIN" --root "$PEER_ROOT" --address "$PEER_SOCK" --config "$ENV_TMP/stargz.toml" \
  >> "$ENV_TMP/accel-peer.log" 2>&1 &   # accel*.log: env_cleanup shows its tail on failure
ENV_PIDS+=($!)
wait_until "stargz-peer socket" "[[ -S $PEER_SOCK ]]"

CTD_EXTRA_PROXY="stargz=$PEER_SOCK" start_containerd
ctrr() { ctr-remote --address "$CTD_SOCK" --namespace e2e "$@"; }
row() { printf '%-58s %18s %12s %8s\n' "$@"; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "building a ${MIB} MiB image (two variants) and converting with ctr-remote ..."
l=$ENV_TMP/l-data; mkdir -p "$l/data" "$l/etc"
data_files "$l/data" "$MIB" 64
for v in v1 v2; do
  echo "hello $v" > "$l/etc/small.txt"
  build_busybox_image "$ENV_TMP/oci:$v"
  add_layer "$ENV_TMP/oci:$v" "$l"
  push_image "$ENV_TMP/oci:$v" "bench/app:$v"
  estargz_with_ctr_remote "$REGISTRY/bench/app:$v" "$REGISTRY/bench/app:$v-esgz"
done
rm -rf "$l" "$ENV_TMP/oci"
big_layer() { # big_layer REF: digest and size of its largest layer
  skopeo inspect --raw --tls-verify=false "docker://$1" | jq -r '.layers | max_by(.size) | "\(.digest) \(.size)"'
}
img=$REGISTRY/bench/app:v1-esgz
read -r big big_size < <(big_layer "$img")
read -r big2 _ < <(big_layer "$REGISTRY/bench/app:v2-esgz")
fetched() { echo $(( $(registry_blob_bytes "$1" || echo 0) + 0 )); }

# data_mount ROOT: the one FUSE mount under ROOT that has the big layer.
data_mount() {
  local m found=()
  while read -r m; do [[ -d $m/data ]] && found+=("$m"); done < <(
    awk -v t="$1/" 'index($2, t) == 1 && $3 ~ /^fuse/ {print $2}' /proc/mounts)
  ((${#found[@]} == 1)) || fail "expected one mount with data/ under $1, found ${#found[@]}"
  echo "${found[0]}"
}
read_all() { # read_all DIR: seconds to read every file under DIR/data, cold
  local t0 t1
  drop_caches; t0=$(now)
  find "$1/data" -type f -exec cat {} + > /dev/null
  t1=$(now); secs "$t0" "$t1"
}

# measure NAME SNAPSHOTTER ROOT: sets NAME_{start,bytes,read_remote,read_local,bytes_all}
measure() {
  local name=$1 sn=$2 root=$3 t0 t1 b0 mp
  echo "$sn: rpull + run ..."
  b0=$(fetched "$big")
  drop_caches; t0=$(now)
  ctrr images rpull --plain-http --snapshotter "$sn" "$img" >/dev/null
  ctrc run --rm --snapshotter "$sn" "$img" "bench-$sn" cat /etc/small.txt >/dev/null
  t1=$(now)
  printf -v "${name}_start" '%s' "$(secs "$t0" "$t1")"
  printf -v "${name}_bytes" '%s' "$(( $(fetched "$big") - b0 ))"
  echo "$sn: reading the big layer (lazily fetched, then local) ..."
  mp=$(data_mount "$root")
  printf -v "${name}_read_remote" '%s' "$(read_all "$mp")"
  printf -v "${name}_read_local" '%s' "$(read_all "$mp")"
  printf -v "${name}_bytes_all" '%s' "$(( $(fetched "$big") - b0 ))"
}
measure peer stargz "$PEER_ROOT"
measure acc accel "$ENV_TMP/accel"

echo "accel: accelctl pull + run (variant v2) ..."
b0=$(fetched "$big2")
drop_caches; t0=$(now)
accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$REGISTRY/bench/app:v2-esgz" >/dev/null
ctrc run --rm --snapshotter accel "$REGISTRY/bench/app:v2-esgz" bench-v2 cat /etc/small.txt >/dev/null
t1=$(now)
accelctl_start=$(secs "$t0" "$t1")
accelctl_bytes=$(( $(fetched "$big2") - b0 ))

mbps() { python3 -c "print(f'{$MIB * 1.048576 / $1:.0f}')"; }
echo
echo "big layer: $big_size bytes compressed, $MIB MiB in 64 files"
row "measure" "stargz-snapshotter" "accel" "ratio"
row "rpull + run cat (s)" "$peer_start" "$acc_start" "$(ratio "$acc_start" "$peer_start")"
row "  accel with accelctl pull instead (s)" "$peer_start" "$accelctl_start" "$(ratio "$accelctl_start" "$peer_start")"
row "layer bytes fetched by then" "$peer_bytes" "$acc_bytes" "$(ratio "$acc_bytes" "$peer_bytes")"
row "  accelctl pull variant" "-" "$accelctl_bytes" "-"
row "read all files, fetched from registry (s)" "$peer_read_remote" "$acc_read_remote" "$(ratio "$acc_read_remote" "$peer_read_remote")"
row "  (MB/s)" "$(mbps "$peer_read_remote")" "$(mbps "$acc_read_remote")" "-"
row "read all files, all data local, cold (s)" "$peer_read_local" "$acc_read_local" "$(ratio "$acc_read_local" "$peer_read_local")"
row "  (MB/s)" "$(mbps "$peer_read_local")" "$(mbps "$acc_read_local")" "-"
row "layer bytes fetched in all" "$peer_bytes_all" "$acc_bytes_all" "$(ratio "$acc_bytes_all" "$peer_bytes_all")"
