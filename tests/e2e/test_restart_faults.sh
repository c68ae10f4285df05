#!/usr/bin/env bash
# Restart faults: a store layer moved away while the daemon is down is never
# an empty layer (reads under the running container fail with EIO, a new
# container of the image is refused naming the layer, accelctl status shows
# it failed and retrying; once the layer is back it serves again); Remove of
# a parent snapshot under a running child is refused and the child reads
# on; a daemon with 200 layers to restore is ready in under 1 s.
source "$(dirname "$0")/env.sh"
env_init restart_faults
STORE=$ENV_TMP/store
mkdir -p "$STORE"
printf 'restore_wait_seconds = 2\n' > "$ENV_TMP/accel.toml"
start_registry
start_accel --config "$ENV_TMP/accel.toml" --store "$STORE"
start_containerd
pull() { accelctl pull --address "$CTD_SOCK" --namespace e2e --snapshotter accel --plain-http "$@"; }

echo "== a store image and a running container"
build_busybox_image "$ENV_TMP/oci:f"
mkdir -p "$ENV_TMP/lf/data"
head -c $((1 << 20)) /dev/urandom > "$ENV_TMP/lf/data/top.bin"
add_layer "$ENV_TMP/oci:f" "$ENV_TMP/lf"
push_image "$ENV_TMP/oci:f" e2e/f:v1
accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/f:v1" >/dev/null
ref=$REGISTRY/e2e/f:v1-acc
pull "$ref" >/dev/null
want=$(sha256sum "$ENV_TMP/lf/data/top.bin" | cut -d' ' -f1)
ctrc run -d --snapshotter accel "$ref" c1 sleep 600 >/dev/null
wait_until "container c1" 'ctrc task ls | grep -q "c1.*RUNNING"'
got=$(ctrc task exec --exec-id r1 c1 sha256sum /data/top.bin)
[[ ${got%% *} == "$want" ]] || fail "first read: $got"

echo "== Remove of a parent under a running child is refused"
diff_id=$(accelctl status --address "$ACCEL_SOCK" | jq -r '.mounted_layers[] | .layer' | tail -1)
parent=$(ctrc snapshots --snapshotter accel info c1 | jq -r .Parent)
[[ -n $parent && $parent != null ]] || fail "no parent for c1"
if ctrc snapshots --snapshotter accel rm "$parent" 2> "$ENV_TMP/rm.err"; then fail "Remove of a parent succeeded"; fi
grep -qi "child" "$ENV_TMP/rm.err" || fail "Remove error does not name the child: $(cat "$ENV_TMP/rm.err")"
ctrc snapshots --snapshotter accel info "$parent" >/dev/null || fail "the parent is gone"
echo 3 > /proc/sys/vm/drop_caches
got=$(ctrc task exec --exec-id r2 c1 sha256sum /data/top.bin)
[[ ${got%% *} == "$want" ]] || fail "child read after refused Remove: $got"

echo "== the store layer moves away while the daemon is down"
stop_accel
# The top layer's data file holds exactly top.bin.
layer_dirs=$(for d in "$STORE"/layers/sha256/*; do
  if [[ $(stat -c %s "$d/data") == 1048576 ]]; then basename "$d"; fi; done)
[[ -n $layer_dirs ]] || fail "cannot find the top layer in the store"
mkdir -p "$ENV_TMP/moved"
for h in $layer_dirs; do mv "$STORE/layers/sha256/$h" "$ENV_TMP/moved/"; done
start_accel --config "$ENV_TMP/accel.toml" --store "$STORE"
wait_until "layers to be marked failed" \
  "accelctl status --address '$ACCEL_SOCK' | jq -e '[.mounted_layers[] | select(.state == \"failed\")] | length >= 1'"
st=$(accelctl status --address "$ACCEL_SOCK")
jq -e '.mounted_layers[] | select(.state == "failed") | .error | length > 0' <<< "$st" >/dev/null ||
  fail "a failed layer shows no error: $st"
echo 3 > /proc/sys/vm/drop_caches
ctrc task exec --exec-id r4 c1 cat /data/top.bin > "$ENV_TMP/eio.out" 2> "$ENV_TMP/eio.err" &&
  fail "read of an unserved layer did not fail"
(( $(stat -c %s "$ENV_TMP/eio.out") < 1048576 )) || fail "read of an unserved layer returned the file"
grep -qi "input/output error" "$ENV_TMP/eio.out" "$ENV_TMP/eio.err" ||
  fail "expected EIO, got: $(cat "$ENV_TMP/eio.err" "$ENV_TMP/eio.out" | head -c 300)"
if ctrc run --rm --snapshotter accel "$ref" c2 true 2> "$ENV_TMP/new.err"; then
  fail "a new container started on a layer that cannot be served"
fi
grep -q "cannot be served" "$ENV_TMP/new.err" || fail "new container error does not name the cause: $(cat "$ENV_TMP/new.err")"
grep -q "sha256:" "$ENV_TMP/new.err" || fail "new container error does not name the layer: $(cat "$ENV_TMP/new.err")"

echo "== the layer comes back: restore retries and serves"
for h in $layer_dirs; do mv "$ENV_TMP/moved/$h" "$STORE/layers/sha256/"; done
wait_until "layers to serve again" \
  "accelctl status --address '$ACCEL_SOCK' | jq -e '[.mounted_layers[] | select(.state != \"serving\")] | length == 0'"
echo 3 > /proc/sys/vm/drop_caches
got=$(ctrc task exec --exec-id r5 c1 sha256sum /data/top.bin)
[[ ${got%% *} == "$want" ]] || fail "read after the layer came back: $got"
out=$(ctrc run --rm --snapshotter accel "$ref" c3 sha256sum /data/top.bin)
[[ ${out%% *} == "$want" ]] || fail "new container after the layer came back: $out"
ctrc task kill -s KILL c1 >/dev/null; sleep 0.3; ctrc task rm -f c1 >/dev/null 2>&1 || true
ctrc container rm c1 >/dev/null 2>&1 || true

echo "== 200 layers to restore: ready in under 1 s"
# One small layer repeated 200 times: 200 chain ids, 200 FUSE mounts.
mkdir -p "$ENV_TMP/one"; echo one > "$ENV_TMP/one/one"
umoci init --layout "$ENV_TMP/many"
umoci new --image "$ENV_TMP/many:v1"
tar -C "$ENV_TMP/one" -cf "$ENV_TMP/one.tar" .
for i in $(seq 200); do umoci raw add-layer --image "$ENV_TMP/many:v1" "$ENV_TMP/one.tar"; done
umoci config --image "$ENV_TMP/many:v1" --os linux --architecture amd64 --config.cmd /one
push_image "$ENV_TMP/many:v1" e2e/many:v1
accelctl convert --plain-http --store "$STORE" "$REGISTRY/e2e/many:v1" >/dev/null
pull "$REGISTRY/e2e/many:v1-acc" >/dev/null
n=$(fuse_mounts)
((n >= 200)) || fail "expected at least 200 layer mounts, got $n"
kill -9 "$ACCEL_PID"; wait "$ACCEL_PID" 2>/dev/null || true; forget_pid "$ACCEL_PID"
t0=$(date +%s.%N)
start_accel --config "$ENV_TMP/accel.toml" --store "$STORE"
t1=$(date +%s.%N)
ready=$(grep 'msg="serving" ' "$ENV_TMP/accel.log" | tail -1 | sed -n 's/.*ready_after="\([^"]*\)".*/\1/p')
echo "ready after $ready (daemon's own measure); start to first answered status: $(echo "$t1 - $t0" | bc) s"
python3 - "$ready" <<'PY' || fail "not ready within 1 s: $ready"
import re, sys
s = sys.argv[1]
m = re.fullmatch(r'([\d.]+)(ms|s)', s)
assert m, s
sec = float(m.group(1)) / (1000 if m.group(2) == 'ms' else 1)
assert sec < 1.0, sec
PY
wait_until "all 200+ layers to serve" \
  "accelctl status --address '$ACCEL_SOCK' | jq -e '([.mounted_layers[] | select(.state == \"serving\")] | length) >= 200'"
(( $(fuse_mounts) == n )) || fail "mounts changed across the restart: $(fuse_mounts), want $n"
echo "PASS test_restart_faults"
