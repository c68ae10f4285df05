#!/usr/bin/env bash
# How long reads are blocked while the daemon restarts.
#   bench/run_restart.sh [RESTARTS]   (default 20)
# A reader reads random 128 KiB pieces of a 64 MiB file in a store layer's
# FUSE mount, dropping the file's cached pages before each read so every
# read reaches the daemon, while the daemon is restarted RESTARTS times
# (alternating SIGTERM and kill -9, started again at once with the same
# command line). Prints, beside the restart count, the time reads were
# blocked per restart (the longest read overlapping each restart: p50, p99,
# max), the read latency with the daemon up (p50) as the baseline from the
# same run, and the number of failed reads.
source "$(dirname "$0")/lib.sh"
RESTARTS=${1:-20}
env_init bench_restart
STORE=$ENV_TMP/store
mkdir -p "$STORE"
start_registry
start_accel --store "$STORE"
start_containerd
build_busybox_image "$ENV_TMP/oci:b"
mkdir -p "$ENV_TMP/l/data"
head -c $((64 << 20)) /dev/urandom > "$ENV_TMP/l/data/big.bin"
add_layer "$ENV_TMP/oci:b" "$ENV_TMP/l"
push_image "$ENV_TMP/oci:b" bench/restart:v1
accelctl convert --plain-http --store "$STORE" "$REGISTRY/bench/restart:v1" >/dev/null
accelctl pull --address "$CTD_SOCK" --namespace e2e --snapshotter accel --plain-http \
  "$REGISTRY/bench/restart:v1-acc" >/dev/null
file=$(ls "$ENV_TMP"/accel/snapshots/*/fs/data/big.bin | head -1)
[[ -f $file ]] || fail "no FUSE mount with the file"

python3 - "$file" "$ENV_TMP/reads.log" "$ENV_TMP/stop" <<'PY' &
import os, random, sys, time
path, log, stop = sys.argv[1:4]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
with open(log, "w") as out:
    while not os.path.exists(stop):
        off = random.randrange(0, size - (128 << 10)) & ~4095
        os.posix_fadvise(fd, off, 128 << 10, os.POSIX_FADV_DONTNEED)
        t0 = time.time()
        try:
            ok = len(os.pread(fd, 128 << 10, off)) == 128 << 10
        except OSError:
            ok = False
        out.write(f"{t0:.6f} {time.time() - t0:.6f} {int(ok)}\n")
        out.flush()
        time.sleep(0.002)
PY
reader=$!
ENV_PIDS+=($reader)
sleep 2
: > "$ENV_TMP/restarts.log"
for i in $(seq "$RESTARTS"); do
  t0=$(now)
  if ((i % 2)); then stop_accel; else kill -9 "$ACCEL_PID"; wait "$ACCEL_PID" 2>/dev/null || true; forget_pid "$ACCEL_PID"; fi
  start_accel --store "$STORE"
  wait_until "layers to serve" \
    "accelctl status --address '$ACCEL_SOCK' | jq -e '[.mounted_layers[] | select(.state != \"serving\")] | length == 0'"
  echo "$t0 $(now)" >> "$ENV_TMP/restarts.log"
  sleep 1
done
touch "$ENV_TMP/stop"
wait "$reader" 2>/dev/null || true
forget_pid "$reader"
python3 - "$ENV_TMP/reads.log" "$ENV_TMP/restarts.log" "$RESTARTS" <<'PY'
import sys
reads = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
windows = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
blocked = []
for a, b in windows:
    over = [d for t, d, ok in reads if t <= b and t + d >= a]
    blocked.append(max(over) if over else 0.0)
inside = lambda t, d: any(t <= b and t + d >= a for a, b in windows)
base = [d for t, d, ok in reads if not inside(t, d)]
failed = sum(1 for t, d, ok in reads if not ok)
print(f"restarts: {sys.argv[3]}  reads: {len(reads)}  failed reads: {failed}")
print(f"read blocked per restart (s): p50 {pct(blocked, 50):.3f}  p99 {pct(blocked, 99):.3f}  max {max(blocked):.3f}")
print(f"read latency, daemon up (s): p50 {pct(base, 50):.4f}  p99 {pct(base, 99):.4f}")
PY
