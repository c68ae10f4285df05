#!/usr/bin/env bash
# A daemon restart (SIGTERM, then kill -9 during pulls) keeps running
# containers running and every snapshot in place.
source "$(dirname "$0")/env.sh"
env_init restart
start_registry
start_accel
start_containerd
build_busybox_image "$ENV_TMP/oci:v1"
ref=$REGISTRY/e2e/restart:v1
push_image "$ENV_TMP/oci:v1" e2e/restart:v1
ctrc images pull --plain-http --snapshotter accel "$ref" >/dev/null

ctrc run -d --snapshotter accel "$ref" long sh -c 'echo started > /tmp/state; sleep 300' >/dev/null
wait_for "container long" sh -c "ctr --address '$CTD_SOCK' -n e2e task ls | grep -q 'long.*RUNNING'"
before=$(ctrc snapshots --snapshotter accel ls | sort)

stop_accel
start_accel
wait_for "containerd to reconnect to accel" ctrc snapshots --snapshotter accel ls
ctrc task ls | grep -q 'long.*RUNNING' || fail "container stopped during the daemon restart"
[[ $(ctrc task exec --exec-id e1 long cat /tmp/state) == started ]] || fail "container lost its state"
after=$(ctrc snapshots --snapshotter accel ls | sort)
[[ $before == "$after" ]] || fail "snapshots changed across restart: before=$before after=$after"
ctrc snapshots --snapshotter accel info long >/dev/null || fail "container snapshot missing"
out=$(ctrc run --rm --snapshotter accel "$ref" after-restart echo ok)
[[ $out == ok ]] || fail "cannot run a new container after restart: $out"

# kill -9 while a pull is in flight, then start again: the database opens,
# every snapshot listed is usable, and a fresh pull + run works.
build_busybox_image "$ENV_TMP/oci:v2"
for i in 1 2 3 4 5 6; do
  mkdir -p "$ENV_TMP/k$i"; head -c 200000 /dev/urandom > "$ENV_TMP/k$i/blob$i"
  add_layer "$ENV_TMP/oci:v2" "$ENV_TMP/k$i"
done
push_image "$ENV_TMP/oci:v2" e2e/restart:v2
ctrc images pull --plain-http --snapshotter accel "$REGISTRY/e2e/restart:v2" >/dev/null 2>&1 &
pull=$!
sleep 0.3
kill -9 "$ACCEL_PID"; forget_pid "$ACCEL_PID"
wait "$pull" 2>/dev/null || true
start_accel
# containerd redials a proxy snapshotter with backoff (at most 3 s in 1.6):
# calls made in that window fail with Unavailable, then it reconnects.
wait_for "containerd to reconnect to accel" ctrc snapshots --snapshotter accel ls
ctrc images rm --sync "$REGISTRY/e2e/restart:v2" >/dev/null 2>&1 || true
ctrc images pull --plain-http --snapshotter accel "$REGISTRY/e2e/restart:v2" >/dev/null
out=$(ctrc run --rm --snapshotter accel "$REGISTRY/e2e/restart:v2" after-kill sh -c 'ls /blob6 && echo ok')
[[ $out == *ok ]] || fail "run after kill -9: $out"
ctrc task ls | grep -q 'long.*RUNNING' || fail "long-running container died"
echo "PASS test_restart"
