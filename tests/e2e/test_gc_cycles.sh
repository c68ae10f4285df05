#!/usr/bin/env bash
# containerd's garbage collection and accel's remote layers: pulling a
# target image (store layers) and an eStargz image (lazy layers), running a
# container, then removing the images, N times over: every FUSE mount goes
# with its snapshot, Cleanup frees the directories, and neither mounts,
# snapshot directories, the daemon's descriptors nor its threads grow.
# Odd cycles pull with ctr-remote rpull, even ones with accelctl pull.
#
#   ACCEL_GC_CYCLES=50 tests/e2e/test_gc_cycles.sh     (default 10, the CI mode)
source "$(dirname "$0")/env.sh"
env_init gc_cycles
CYCLES=${ACCEL_GC_CYCLES:-10}
start_registry
STORE=$ENV_TMP/store
start_accel_lazy --store "$STORE" --log-level info
start_containerd
rpull() { ctr-remote --address "$CTD_SOCK" --namespace e2e images rpull --plain-http --snapshotter accel "$1" >/dev/null; }
snapshot_dirs() { find "$ENV_TMP/accel/snapshots" -mindepth 1 -maxdepth 1 | wc -l; }
daemon_fds() { ls "/proc/$ACCEL_PID/fd" | wc -l; }
daemon_threads() { ls "/proc/$ACCEL_PID/task" | wc -l; }

build_fidelity_image "$ENV_TMP/oci:app"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
accelctl convert --plain-http --store "$STORE" "$src" > /dev/null
estargz_with_ctr_remote "$src" "$REGISTRY/e2e/app:v1-esgz"
targets=("$src-acc" "$REGISTRY/e2e/app:v1-esgz")

cycle() {
  local i=$1 t
  for t in "${targets[@]}"; do
    if ((i % 2)); then
      rpull "$t"
    else
      accelctl pull --address "$CTD_SOCK" --namespace e2e --plain-http "$t" > /dev/null
    fi
  done
  [[ $(fuse_mounts) == 6 ]] || fail "cycle $i: $(fuse_mounts) FUSE mounts after the pulls (want 6)"
  out=$(ctrc run --rm --snapshotter accel "${targets[0]}" "c$i" cat /opq/new-file)
  [[ $out == new ]] || fail "cycle $i: store image read [$out]"
  out=$(ctrc run --rm --snapshotter accel "${targets[1]}" "d$i" cat /data/file)
  [[ $out == regular ]] || fail "cycle $i: eStargz image read [$out]"
  ctrc images rm --sync "${targets[@]}" >/dev/null
  wait_until "cycle $i: layers unmounted" '[[ $(fuse_mounts) == 0 ]]'
}

cycle 0
wait_until "snapshot directories freed" '[[ $(snapshot_dirs) == 0 ]]'
fds0=$(daemon_fds); threads0=$(daemon_threads)
for ((i = 1; i <= CYCLES; i++)); do cycle "$i"; done
wait_until "snapshot directories freed" '[[ $(snapshot_dirs) == 0 ]]'
fds=$(daemon_fds); threads=$(daemon_threads)
echo "after $CYCLES cycles: fds $fds0 -> $fds, threads $threads0 -> $threads"
((fds <= fds0 + 2)) || fail "daemon descriptors grew: $fds0 -> $fds"
((threads <= threads0)) || fail "daemon threads grew: $threads0 -> $threads"
[[ $(ctrc snapshots --snapshotter accel ls | wc -l) -le 1 ]] || fail "snapshots left: $(ctrc snapshots --snapshotter accel ls)"
echo "PASS test_gc_cycles"
