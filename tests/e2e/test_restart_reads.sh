#!/usr/bin/env bash
# Restarts without failed reads: a container per kind (a preloaded store
# image, a lazy eStargz image) reads and checks files of its lowest and top
# layers every 50 ms, page caches dropped all the while so reads reach the
# daemon, while the daemon is restarted ACCEL_RESTARTS times (default 20):
# alternating SIGTERM and kill -9, one start of a different binary (a copy
# whose version string differs), all with the same command line. Asserts:
# zero failed reads, reads continue after every restart, no FUSE mount is
# stacked or lost, the layers serve again (accelctl status), and new
# containers of both images start afterwards.
source "$(dirname "$0")/env.sh"
env_init restart_reads
RESTARTS=${ACCEL_RESTARTS:-20}
STORE=$ENV_TMP/store
mkdir -p "$STORE"
start_registry
start_accel_lazy --store "$STORE"
start_containerd
pull() { accelctl pull --address "$CTD_SOCK" --namespace e2e --snapshotter accel --plain-http "$@"; }

echo "== images: a store target and an eStargz image, each with a 4 MiB top file"
build_busybox_image "$ENV_TMP/oci:s"
mkdir -p "$ENV_TMP/ls/data" "$ENV_TMP/le/data"
head -c $((4 << 20)) /dev/urandom > "$ENV_TMP/ls/data/top.bin"
head -c $((4 << 20)) /dev/urandom > "$ENV_TMP/le/data/top.bin"
add_layer "$ENV_TMP/oci:s" "$ENV_TMP/ls"
push_image "$ENV_TMP/oci:s" e2e/rs:v1
build_busybox_image "$ENV_TMP/oci:e"
add_layer "$ENV_TMP/oci:e" "$ENV_TMP/le"
push_image "$ENV_TMP/oci:e" e2e/re:v1
accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/rs:v1" >/dev/null
estargz_with_ctr_remote "$REGISTRY/e2e/re:v1" "$REGISTRY/e2e/re:v1-esgz"
pull "$REGISTRY/e2e/rs:v1-acc" >/dev/null
pull "$REGISTRY/e2e/re:v1-esgz" >/dev/null
layers=$(fuse_mounts)
((layers == 4)) || fail "expected 4 FUSE layer mounts, got $layers"

low=$(sha256sum /bin/busybox | cut -d' ' -f1)
reader='while true; do
  set -- $(sha256sum /data/top.bin 2>&1); a=$1
  set -- $(sha256sum /bin/busybox 2>&1); b=$1
  if [ "$a" = "$TOP" ] && [ "$b" = "$LOW" ]; then echo ok >> /out/ok; else echo "fail $a $b" >> /out/fail; fi
  sleep 0.05
done'
run_reader() { # NAME IMAGE TOP_FILE
  mkdir -p "$ENV_TMP/out-$1"
  ctrc run -d --snapshotter accel --mount "type=bind,src=$ENV_TMP/out-$1,dst=/out,options=rbind:rw" \
    --env "TOP=$(sha256sum "$3" | cut -d' ' -f1)" --env "LOW=$low" "$2" "$1" sh -c "$reader" >/dev/null
}
run_reader rs "$REGISTRY/e2e/rs:v1-acc" "$ENV_TMP/ls/data/top.bin"
run_reader re "$REGISTRY/e2e/re:v1-esgz" "$ENV_TMP/le/data/top.bin"
oks() { cat "$ENV_TMP"/out-r$1/ok 2>/dev/null | wc -l; }
fails() { cat "$ENV_TMP"/out-rs/fail "$ENV_TMP"/out-re/fail 2>/dev/null | wc -l; }
wait_until "both readers to read" '(( $(oks s) > 2 && $(oks e) > 2 ))'

# Page caches dropped every 100 ms: reads go to the FUSE server.
( while true; do echo 3 > /proc/sys/vm/drop_caches; sleep 0.1; done ) &
dropper=$!
ENV_PIDS+=($dropper)

# A different binary: the same build with another version string.
other=$ENV_TMP/bin2/accel-snapshotter
mkdir -p "$ENV_TMP/bin2"
version=$("$ACCEL_BIN_DIR/accel-snapshotter" --version | awk '{print $2}')
python3 - "$ACCEL_BIN_DIR/accel-snapshotter" "$other" "$version" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
old = b'\x00' + sys.argv[3].encode() + b'\x00'
assert d.count(old) == 1, "version string not unique in the binary"
new = b'\x00' + sys.argv[3].encode()[:-1] + (b'9' if not sys.argv[3].endswith('9') else b'8') + b'\x00'
open(sys.argv[2], 'wb').write(d.replace(old, new))
PY
ln -s "$ACCEL_BIN_DIR/accelctl" "$ENV_TMP/bin2/accelctl"
chmod +x "$other"
[[ $("$other" --version) != $("$ACCEL_BIN_DIR/accel-snapshotter" --version) ]] ||
  fail "the second binary reports the same version"

echo "== $RESTARTS restarts under reading containers"
for i in $(seq "$RESTARTS"); do
  before_s=$(oks s) before_e=$(oks e)
  if ((i % 2)); then stop_accel; else kill -9 "$ACCEL_PID"; wait "$ACCEL_PID" 2>/dev/null || true; forget_pid "$ACCEL_PID"; fi
  sleep 0.3  # readers wait meanwhile
  if ((i == 3)); then ACCEL_BIN_DIR=$ENV_TMP/bin2 start_accel_lazy --store "$STORE"; else start_accel_lazy --store "$STORE"; fi
  wait_until "reads to continue after restart $i" '(( $(oks s) > before_s && $(oks e) > before_e ))'
  (( $(fails) == 0 )) || fail "failed reads after restart $i: $(cat "$ENV_TMP"/out-r*/fail | head -5)"
  (( $(fuse_mounts) == layers )) || fail "FUSE mounts changed after restart $i: $(fuse_mounts), want $layers"
done
stop_pid "$dropper"; forget_pid "$dropper"
echo "reads: store $(oks s), lazy $(oks e), failed $(fails)"
(( $(fails) == 0 )) || fail "failed reads: $(cat "$ENV_TMP"/out-r*/fail | head -5)"

st=$(accelctl status --address "$ACCEL_SOCK")
jq -e '.fd_store == "holder"' <<< "$st" >/dev/null || fail "fd store is not the holder: $st"
jq -e '[.mounted_layers[] | select(.state == "serving")] | length == 4' <<< "$st" >/dev/null ||
  fail "not every layer serves: $st"
holders=$(ls "$ENV_TMP"/accel/fd-holder.sock.pid | wc -l)
((holders == 1)) || fail "expected one fd holder"

echo "== new containers after the restarts"
out=$(ctrc run --rm --snapshotter accel "$REGISTRY/e2e/rs:v1-acc" n1 sha256sum /data/top.bin)
[[ ${out%% *} == $(sha256sum "$ENV_TMP/ls/data/top.bin" | cut -d' ' -f1) ]] || fail "new store container: $out"
out=$(ctrc run --rm --snapshotter accel "$REGISTRY/e2e/re:v1-esgz" n2 sha256sum /data/top.bin)
[[ ${out%% *} == $(sha256sum "$ENV_TMP/le/data/top.bin" | cut -d' ' -f1) ]] || fail "new lazy container: $out"
echo "PASS test_restart_reads"
