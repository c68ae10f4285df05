#!/usr/bin/env bash
# accel-snapshotter as a process: flags, config errors, socket mode, systemd
# readiness (sd_notify), refusal to steal a live socket, replacement of a stale
# one, and clean shutdown on SIGTERM. Starts only its own daemons, stops them
# by PID.
set -euo pipefail
bin=${ACCEL_BIN_DIR:?ACCEL_BIN_DIR must point at build/bin}
tmp=$(mktemp -d /tmp/accel-daemon.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  # The fd holders the daemons started (ROOT/fd-holder.sock.pid).
  local f
  for f in "$tmp"/root*/fd-holder.sock.pid; do
    if [[ -f $f ]]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $tmp/d.log ]] && tail -20 "$tmp/d.log" >&2; exit 1; }
wait_socket() {
  for _ in $(seq 200); do [[ -S $1 ]] && return 0; sleep 0.05; done
  fail "socket $1 did not appear"
}

# --help and --version.
"$bin/accel-snapshotter" --help | grep -q -- '--address SOCKET' || fail "--help lacks --address"
"$bin/accel-snapshotter" --version | grep -Eq '^accel-snapshotter [0-9]+\.[0-9]+' || fail "--version"
"$bin/accelctl" --help | grep -q status || fail "accelctl --help lacks status"

# Bad input: one clear line, non-zero exit.
set +e
out=$("$bin/accel-snapshotter" --bogus 2>&1); rc=$?
[[ $rc -ne 0 && $out == *'unknown argument "--bogus"'* ]] || fail "bad flag: rc=$rc out=$out"
printf 'roots = "/x"\n' > "$tmp/bad.toml"
out=$("$bin/accel-snapshotter" --config "$tmp/bad.toml" 2>&1); rc=$?
[[ $rc -ne 0 && $out == *'unknown key "roots"'* ]] || fail "bad config: rc=$rc out=$out"
out=$("$bin/accel-snapshotter" --config "$tmp/missing.toml" 2>&1); rc=$?
[[ $rc -ne 0 && $out == *missing.toml* ]] || fail "missing config: rc=$rc out=$out"
out=$("$bin/accel-snapshotter" --log-level loud 2>&1); rc=$?
[[ $rc -ne 0 && $out == *'unknown log level'* ]] || fail "bad level: rc=$rc out=$out"
out=$("$bin/accel-snapshotter" --root relative/dir --address "$tmp/r.sock" 2>&1); rc=$?
[[ $rc -ne 0 && $out == *'absolute path'* ]] || fail "relative root: rc=$rc out=$out"
set -e

# Config file values are used; flags override them.
sock=$tmp/a.sock
cat > "$tmp/good.toml" <<TOML
root = "$tmp/root-from-config"
address = "/nonexistent/overridden.sock"
log_level = "debug"
TOML

# Readiness: a datagram socket stands in for systemd's NOTIFY_SOCKET.
python3 - "$tmp/notify.sock" "$tmp/notify.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "w") as out:
    try:
        while True:
            msg = s.recv(4096).decode()
            out.write(msg + "\n"); out.flush()
            if "STOPPING=1" in msg:
                break
    except socket.timeout:
        pass
PY
pids+=($!)
for _ in $(seq 100); do [[ -S $tmp/notify.sock ]] && break; sleep 0.05; done
NOTIFY_SOCKET=$tmp/notify.sock "$bin/accel-snapshotter" --config "$tmp/good.toml" \
  --address "$sock" >"$tmp/d.log" 2>&1 &
dpid=$!
pids+=($dpid)
wait_socket "$sock"
for _ in $(seq 100); do grep -q READY=1 "$tmp/notify.out" 2>/dev/null && break; sleep 0.05; done
grep -q READY=1 "$tmp/notify.out" || fail "no READY=1 sent to NOTIFY_SOCKET"
[[ $(stat -c %a "$sock") == 600 ]] || fail "socket mode is $(stat -c %a "$sock"), want 600"
[[ -f $tmp/root-from-config/metadata.db ]] || fail "root from the config file not used"

status=$("$bin/accelctl" status --address "$sock")
echo "$status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["daemon"] == "up", s
assert s["pid"] == int(sys.argv[1]), s
assert s["root"].endswith("root-from-config"), s
assert s["snapshots"] == {"active": 0, "committed": 0, "view": 0}, s
' "$dpid" || fail "accelctl status: $status"
grep -q 'level=debug msg="status"' "$tmp/d.log" || fail "log_level from the config file not used"

# A second daemon must not steal a live socket.
set +e
out=$("$bin/accel-snapshotter" --root "$tmp/root2" --address "$sock" 2>&1); rc=$?
set -e
[[ $rc -ne 0 && $out == *'another process is serving'* ]] || fail "second daemon: rc=$rc out=$out"
[[ -S $sock ]] || fail "the live socket was removed by the second daemon"

# SIGTERM: clean exit, STOPPING=1; the listening socket stays, held by the
# fd holder for the next daemon (connections wait in its backlog).
kill -TERM "$dpid"
wait "$dpid" || fail "daemon exited non-zero on SIGTERM"
grep -q STOPPING=1 "$tmp/notify.out" || fail "no STOPPING=1 on shutdown"
[[ -S $sock ]] || fail "the kept socket was removed after SIGTERM"
[[ -f $tmp/root-from-config/fd-holder.sock.pid ]] || fail "no fd holder"
grep -q 'msg="stopped"' "$tmp/d.log" || fail "no stopped line in the log"

# accelctl status against a dead daemon: JSON saying so, exit 1.
set +e
out=$("$bin/accelctl" status --address "$sock" --timeout 2); rc=$?
set -e
[[ $rc -eq 1 && $out == *'"daemon": "down"'* ]] || fail "status of a stopped daemon: rc=$rc out=$out"

# The holder goes (as after a reboot): the socket file is stale now.
hpid=$(cat "$tmp/root-from-config/fd-holder.sock.pid")
kill "$hpid"
for _ in $(seq 100); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.05; done

# A stale socket is replaced; after kill -9 the next daemon of the same root
# takes the socket its holder kept.
"$bin/accel-snapshotter" --root "$tmp/root3" --address "$sock" >"$tmp/d.log" 2>&1 &
dpid=$!; pids+=($dpid)
wait_socket "$sock"
kill -9 "$dpid"; wait "$dpid" 2>/dev/null || true
[[ -S $sock ]] || fail "expected a stale socket after kill -9"
"$bin/accel-snapshotter" --root "$tmp/root3" --address "$sock" >"$tmp/d.log" 2>&1 &
dpid=$!; pids+=($dpid)
for _ in $(seq 100); do "$bin/accelctl" status --address "$sock" --timeout 1 >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/accelctl" status --address "$sock" >/dev/null || fail "daemon did not take over a stale socket"
kill -TERM "$dpid"; wait "$dpid" || fail "second shutdown failed"

# --fd-store none: nothing outlives the daemon; SIGTERM removes the socket.
"$bin/accel-snapshotter" --root "$tmp/root4" --address "$tmp/n.sock" --fd-store none >"$tmp/d.log" 2>&1 &
dpid=$!; pids+=($dpid)
wait_socket "$tmp/n.sock"
kill -TERM "$dpid"; wait "$dpid" || fail "shutdown with --fd-store none failed"
[[ ! -e $tmp/n.sock ]] || fail "socket left behind after SIGTERM with --fd-store none"
[[ ! -e $tmp/root4/fd-holder.sock.pid ]] || fail "a holder was started with --fd-store none"
echo "PASS test_daemon"
