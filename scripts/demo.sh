#!/usr/bin/env bash
# The end-to-end demo on an embedded default: installs what is missing,
# builds, then starts a private registry (127.0.0.1), a private containerd and
# accel-snapshotter (all state under one temporary directory), builds a
# busybox image, pushes it, pulls it through the "accel" snapshotter, runs a
# container from it, prints `accelctl status`, and stops and unmounts
# everything it started (by PID and by path, never by name).
#
# Usage (as root): scripts/demo.sh
#   ACCEL_SKIP_INSTALL=1 skips apt; ACCEL_KEEP=1 keeps the temporary directory.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) -ne 0 ]]; then echo "demo.sh: run as root (containerd and mounts need it)" >&2; exit 1; fi
[[ ${ACCEL_SKIP_INSTALL:-0} == 1 ]] || "$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
bin=${ACCEL_BIN_DIR:-$top/build/bin}

step() { printf '\n==> %s\n' "$*"; }
tmp=$(mktemp -d /tmp/accel-demo.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  set +e
  if [[ -S $tmp/ctd.sock ]]; then
    ctr --address "$tmp/ctd.sock" -n demo task kill -s KILL demo-run >/dev/null 2>&1
    ctr --address "$tmp/ctd.sock" -n demo container rm demo-run >/dev/null 2>&1
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null
    for _ in $(seq 100); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[i]}" 2>/dev/null
    wait "${pids[i]}" 2>/dev/null
  done
  # Deepest mounts first.
  awk -v t="$tmp" '$2 ~ "^"t {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [[ ${ACCEL_KEEP:-0} == 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
  if ((rc != 0)); then
    echo "demo FAILED (exit $rc); last daemon log lines:" >&2
    tail -n 15 "$tmp/accel.log" 2>/dev/null >&2
  fi
  exit $rc
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; return 1
}

step "registry on 127.0.0.1"
port=$(free_port)
cat > "$tmp/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $tmp/registry
http:
  addr: 127.0.0.1:$port
log:
  level: warn
YML
docker-registry serve "$tmp/registry.yml" > "$tmp/registry.log" 2>&1 &
pids+=($!)
wait_for registry curl -fsS "http://127.0.0.1:$port/v2/"
echo "registry: 127.0.0.1:$port"

step "accel-snapshotter"
"$bin/accel-snapshotter" --root "$tmp/accel" --address "$tmp/accel.sock" > "$tmp/accel.log" 2>&1 &
pids+=($!)
wait_for "accel socket" test -S "$tmp/accel.sock"

step "containerd (private root, state and socket; accel as proxy snapshotter)"
cat > "$tmp/containerd.toml" <<TOML
version = 2
root = "$tmp/ctd-root"
state = "$tmp/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$tmp/ctd.sock"
[proxy_plugins.accel]
  type = "snapshot"
  address = "$tmp/accel.sock"
TOML
containerd --config "$tmp/containerd.toml" > "$tmp/containerd.log" 2>&1 &
pids+=($!)
ctr=(ctr --address "$tmp/ctd.sock" -n demo)
wait_for containerd "${ctr[@]}" version

step "build a busybox image and push it"
umoci init --layout "$tmp/oci"
umoci new --image "$tmp/oci:demo"
umoci unpack --image "$tmp/oci:demo" "$tmp/bundle" >/dev/null
mkdir -p "$tmp/bundle/rootfs/bin"
cp /bin/busybox "$tmp/bundle/rootfs/bin/busybox"
for app in sh echo cat ls uname; do ln -s busybox "$tmp/bundle/rootfs/bin/$app"; done
umoci repack --image "$tmp/oci:demo" "$tmp/bundle"
umoci config --image "$tmp/oci:demo" --os linux --architecture amd64 \
  --config.env PATH=/bin --config.cmd /bin/sh
ref=127.0.0.1:$port/accel/demo:latest
skopeo copy --quiet --dest-tls-verify=false "oci:$tmp/oci:demo" "docker://$ref"

step "pull through accel"
"${ctr[@]}" images pull --plain-http --snapshotter accel "$ref" | tail -n 2

step "run a container on accel"
out=$("${ctr[@]}" run --rm --snapshotter accel "$ref" demo-run sh -c 'echo hello from accel; uname -s')
echo "$out"
[[ $out == *"hello from accel"* ]] || { echo "unexpected container output" >&2; exit 1; }

step "snapshots held by accel"
ctr --address "$tmp/ctd.sock" -n demo snapshots --snapshotter accel tree
"$bin/accelctl" status --address "$tmp/accel.sock"

step "done: stopping everything this demo started"
