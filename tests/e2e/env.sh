# Sourced by end-to-end tests, benchmarks and scripts/demo.sh: starts a
# private registry, containerd and accel-snapshotter under one temporary
# directory and tears down exactly what it started (by PID, then mounts by
# path, deepest first), also on failure.
#
#   source tests/e2e/env.sh
#   env_init NAME          # $ENV_TMP, cleanup trap
#   start_registry         # $REGISTRY (127.0.0.1:PORT)
#   start_accel [ARGS...]  # $ACCEL_SOCK, $ACCEL_PID, log $ENV_TMP/accel.log
#   start_containerd       # $CTD_SOCK; ctrc = ctr on it, namespace "e2e"
#   build_busybox_image LAYOUT:TAG [files...]  # OCI layout with busybox
#   push_image LAYOUT:TAG REPO:TAG             # to $REGISTRY
#   fail MESSAGE           # prints logs, exits 1

set -euo pipefail
ENV_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ACCEL_BIN_DIR=${ACCEL_BIN_DIR:-$ENV_TOP/build/bin}
ENV_PIDS=()

env_init() {
  ENV_NAME=$1
  # Short path: unix socket paths are limited to 108 bytes.
  ENV_TMP=$(mktemp -d "/tmp/ae-$1.XXXXXX")
  trap env_cleanup EXIT
}

env_cleanup() {
  local rc=$?
  set +e
  if [[ -n ${CTD_SOCK:-} && -S $CTD_SOCK ]]; then
    local t
    for t in $(ctrc task ls -q 2>/dev/null); do ctrc task kill -s KILL "$t" >/dev/null 2>&1; done
    sleep 0.2
    for t in $(ctrc task ls -q 2>/dev/null); do ctrc task rm -f "$t" >/dev/null 2>&1; done
    for t in $(ctrc container ls -q 2>/dev/null); do ctrc container rm "$t" >/dev/null 2>&1; done
  fi
  local i
  for ((i = ${#ENV_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${ENV_PIDS[i]}"; done
  awk -v t="$ENV_TMP" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if ((rc != 0)); then
    echo "---- $ENV_NAME failed (exit $rc); log tails:" >&2
    for f in "$ENV_TMP"/accel*.log "$ENV_TMP"/containerd.log; do
      [[ -f $f ]] && { echo "-- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  [[ ${ACCEL_KEEP:-0} == 1 ]] && echo "kept $ENV_TMP" || rm -rf "$ENV_TMP"
  exit $rc
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; reaps it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  return 0
}

forget_pid() {
  local p keep=()
  for p in "${ENV_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  ENV_PIDS=("${keep[@]}")
}

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_registry() {
  local port; port=$(free_port)
  cat > "$ENV_TMP/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $ENV_TMP/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
log:
  level: info
  accesslog:
    disabled: false
YML
  docker-registry serve "$ENV_TMP/registry.yml" > "$ENV_TMP/registry.log" 2>&1 &
  ENV_PIDS+=($!)
  REGISTRY=127.0.0.1:$port
  wait_for registry curl -fsS "http://$REGISTRY/v2/"
}

start_accel() {
  ACCEL_SOCK=$ENV_TMP/accel.sock
  "$ACCEL_BIN_DIR/accel-snapshotter" --root "$ENV_TMP/accel" --address "$ACCEL_SOCK" \
    --log-level debug "$@" >> "$ENV_TMP/accel.log" 2>&1 &
  ACCEL_PID=$!
  ENV_PIDS+=($ACCEL_PID)
  wait_for "accel-snapshotter" "$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL_SOCK" --timeout 1
}

stop_accel() { # SIGTERM, as systemd does
  stop_pid "$ACCEL_PID"
  forget_pid "$ACCEL_PID"
}

start_containerd() {
  CTD_SOCK=$ENV_TMP/ctd.sock
  cat > "$ENV_TMP/containerd.toml" <<TOML
version = 2
root = "$ENV_TMP/ctd-root"
state = "$ENV_TMP/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD_SOCK"
[proxy_plugins.accel]
  type = "snapshot"
  address = "$ENV_TMP/accel.sock"
TOML
  containerd --config "$ENV_TMP/containerd.toml" > "$ENV_TMP/containerd.log" 2>&1 &
  ENV_PIDS+=($!)
  wait_for containerd ctrc version
}

ctrc() { ctr --address "$CTD_SOCK" --namespace e2e "$@"; }

# build_busybox_image LAYOUT:TAG [SRC=DEST ...]: an OCI image whose first
# layer is busybox-static; each SRC=DEST copies a host file into it.
build_busybox_image() {
  local image=$1; shift
  local layout=${image%%:*} bundle
  bundle=$(mktemp -d "$ENV_TMP/bundle.XXXX")
  rm -rf "$bundle"
  [[ -d $layout ]] || umoci init --layout "$layout"
  umoci new --image "$image"
  umoci unpack --image "$image" "$bundle" >/dev/null
  mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/tmp"
  cp /bin/busybox "$bundle/rootfs/bin/busybox"
  local app
  for app in sh echo cat ls sleep stat find sha256sum uname touch mkdir wc; do
    ln -s busybox "$bundle/rootfs/bin/$app"
  done
  local pair
  for pair in "$@"; do cp -a "${pair%%=*}" "$bundle/rootfs/${pair#*=}"; done
  umoci repack --image "$image" "$bundle"
  umoci config --image "$image" --os linux --architecture amd64 \
    --config.env PATH=/bin --config.cmd /bin/sh
  rm -rf "$bundle"
}

# add_layer LAYOUT:TAG DIR [TAR_ARGS...]: appends one uncompressed layer made
# of DIR's contents (GNU tar; pass --xattrs etc. to keep more metadata).
add_layer() {
  local image=$1 dir=$2; shift 2
  local tarball
  tarball=$(mktemp "$ENV_TMP/layer.XXXX.tar")
  tar -C "$dir" --numeric-owner "$@" -cf "$tarball" .
  umoci raw add-layer --image "$image" "$tarball"
  rm -f "$tarball"
}

push_image() {
  skopeo copy --quiet --dest-tls-verify=false "oci:$1" "docker://$REGISTRY/$2"
}
