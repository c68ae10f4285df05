# The one end-to-end harness, sourced by every e2e test (the registry tests
# through lib_registry.sh), the benchmarks and scripts/demo.sh: starts
# private registries, containerd and accel-snapshotter under one temporary
# directory and tears down exactly what it started (by PID, then mounts by
# path, deepest first), also on failure. Everything listens on 127.0.0.1 or
# on unix sockets under that directory.
#
#   source tests/e2e/env.sh
#   env_init NAME          # $ENV_TMP, cleanup trap
#   start_registry         # $REGISTRY (127.0.0.1:PORT), log $ENV_TMP/registry.log
#   start_registry NAME [YAML...]  # another one: $REG_<NAME>, $REG_<NAME>_PID,
#                          # $REG_<NAME>_DATA; YAML lines appended to its config
#                          # (auth:, proxy:); TLS if REG_TLS_CERT/REG_TLS_KEY are set
#   start_accel [ARGS...]  # $ACCEL_SOCK, $ACCEL_PID, log $ENV_TMP/accel.log
#   start_containerd       # $CTD_SOCK; ctrc = ctr on it, namespace "e2e"
#   start_containerd_cri HOSTS_DIR  # the same with the CRI plugin, accel for pods
#   bg_start NAME CMD...   # a helper process, log $ENV_TMP/NAME.log, PID $BG_PID
#   build_busybox_image LAYOUT:TAG [files...]  # OCI layout with busybox
#   push_image LAYOUT:TAG REPO:TAG             # to $REGISTRY
#   fail MESSAGE           # exits 1; the cleanup prints the logs' tails

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
    # What tests ran (namespace e2e) and what the CRI plugin ran (k8s.io),
    # so no shim outlives the test.
    local t ns
    for ns in e2e k8s.io; do
      for t in $(ctr -a "$CTD_SOCK" -n "$ns" task ls -q 2>/dev/null); do
        ctr -a "$CTD_SOCK" -n "$ns" task kill -s KILL "$t" >/dev/null 2>&1
      done
      sleep 0.2
      for t in $(ctr -a "$CTD_SOCK" -n "$ns" task ls -q 2>/dev/null); do
        ctr -a "$CTD_SOCK" -n "$ns" task rm -f "$t" >/dev/null 2>&1
      done
      for t in $(ctr -a "$CTD_SOCK" -n "$ns" container ls -q 2>/dev/null); do
        ctr -a "$CTD_SOCK" -n "$ns" container rm "$t" >/dev/null 2>&1
      done
    done
  fi
  local i
  for ((i = ${#ENV_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${ENV_PIDS[i]}"; done
  # After the daemons (a live daemon would start its holder again).
  stop_fd_holders
  awk -v t="$ENV_TMP" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if ((rc != 0)); then
    echo "---- $ENV_NAME failed (exit $rc); log tails:" >&2
    for f in "$ENV_TMP"/*.log; do
      [[ -f $f ]] && { echo "-- $f" >&2; tail -n 20 "$f" | cut -c1-400 >&2; }
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

# wait_until DESCRIPTION 'SHELL CONDITION': like wait_for, but the condition
# is evaluated afresh each time (so $(...) in it is re-run).
wait_until() {
  local what=$1 cond=$2
  for _ in $(seq 300); do eval "$cond" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [CURL ARGS...]: waits until URL answers (any HTTP status).
wait_http() {
  local url=$1; shift
  for _ in $(seq 300); do
    if curl -s -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
    sleep 0.1
  done
  fail "$url did not come up"
}

# bg_start NAME CMD...: runs CMD in the background, log $ENV_TMP/NAME.log,
# PID in $BG_PID (stopped by the cleanup).
bg_start() {
  local name=$1; shift
  "$@" >>"$ENV_TMP/$name.log" 2>&1 &
  BG_PID=$!
  ENV_PIDS+=("$BG_PID")
}

# registry_config FILE ADDR DATA_DIR [YAML...]: a docker-registry config
# (TLS when REG_TLS_CERT and REG_TLS_KEY are set).
registry_config() {
  local file=$1 addr=$2 data=$3 line; shift 3
  mkdir -p "$data"
  {
    printf 'version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$data"
    printf 'http:\n  addr: %s\n  secret: accel-test-secret\n' "$addr"
    if [[ -n ${REG_TLS_CERT:-} ]]; then
      printf '  tls:\n    certificate: %s\n    key: %s\n' "$REG_TLS_CERT" "$REG_TLS_KEY"
    fi
    for line in "$@"; do echo "$line"; done
  } >"$file"
}

# wait_registry ADDR: until the registry at ADDR answers (https with TLS).
wait_registry() {
  if [[ -n ${REG_TLS_CERT:-} ]]; then wait_http "https://$1/v2/" -k; else wait_http "http://$1/v2/"; fi
}

# start_registry: the tests' registry, $REGISTRY. start_registry NAME
# [YAML...]: another one (see the top of this file).
start_registry() {
  local port; port=$(free_port)
  if (($# == 0)); then
    REGISTRY=127.0.0.1:$port
    registry_config "$ENV_TMP/registry.yml" "$REGISTRY" "$ENV_TMP/registry"
    restart_registry
    return
  fi
  local name=$1; shift
  registry_config "$ENV_TMP/registry-$name.yml" "127.0.0.1:$port" "$ENV_TMP/registry-$name" "$@"
  bg_start "registry-$name" docker-registry serve "$ENV_TMP/registry-$name.yml"
  printf -v "REG_$name" '%s' "127.0.0.1:$port"
  printf -v "REG_${name}_PID" '%s' "$BG_PID"
  printf -v "REG_${name}_DATA" '%s' "$ENV_TMP/registry-$name"
  wait_registry "127.0.0.1:$port"
}
# restart_registry: starts $REGISTRY again (same port and storage) after
# stop_registry.
restart_registry() {
  bg_start registry docker-registry serve "$ENV_TMP/registry.yml"
  REGISTRY_PID=$BG_PID
  wait_registry "$REGISTRY"
}
stop_registry() {
  stop_pid "$REGISTRY_PID"
  forget_pid "$REGISTRY_PID"
}

start_accel() {
  ACCEL_SOCK=$ENV_TMP/accel.sock
  "$ACCEL_BIN_DIR/accel-snapshotter" --root "$ENV_TMP/accel" --address "$ACCEL_SOCK" \
    --log-level debug "$@" >> "$ENV_TMP/accel.log" 2>&1 &
  ACCEL_PID=$!
  ENV_PIDS+=($ACCEL_PID)
  wait_for "accel-snapshotter" "$ACCEL_BIN_DIR/accelctl" status --address "$ACCEL_SOCK" --timeout 1
}

# stop_fd_holders: the fd holders that accel daemons of this test started
# (`accel-snapshotter --fd-holder $ENV_TMP/...`), found by their command line
# in /proc (never by globbing: a directory here may be a FUSE mount nobody
# serves) and stopped by PID; their FUSE connections end.
stop_fd_holders() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$( { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *"--fd-holder $ENV_TMP/"* ]] && stop_pid "${p#/proc/}"
  done
  return 0
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
  # CTD_EXTRA_PROXY="name=socket ...": more accel daemons (e.g. a second node).
  local extra
  for extra in ${CTD_EXTRA_PROXY:-}; do
    printf '[proxy_plugins.%s]\n  type = "snapshot"\n  address = "%s"\n' \
      "${extra%%=*}" "${extra#*=}" >> "$ENV_TMP/containerd.toml"
  done
  # CTD_GC_ON_REQUEST=1: garbage collection only when asked (--sync), not
  # after deletions: snapshots made without a lease or gc.root label (ctr
  # snapshots view) would otherwise vanish at a moment that depends on load.
  # (No collection at startup, none after any number of deletions or
  # mutations, and after an explicit one the next waits average GC time /
  # pause_threshold.)
  if [[ ${CTD_GC_ON_REQUEST:-0} == 1 ]]; then
    cat >> "$ENV_TMP/containerd.toml" <<'TOML'
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "0s"
  deletion_threshold = 1000000
  mutation_threshold = 1000000
  pause_threshold = 0.0000001
TOML
  fi
  # CTD_DEBUG=1: containerd logs at debug level.
  [[ -n ${CTD_DEBUG:-} ]] && printf "[debug]\n  level = \"debug\"\n" >> "$ENV_TMP/containerd.toml"
  containerd --config "$ENV_TMP/containerd.toml" > "$ENV_TMP/containerd.log" 2>&1 &
  ENV_PIDS+=($!)
  wait_for containerd ctrc version
}

# start_containerd_cri HOSTS_DIR: containerd with its CRI plugin (the API
# kubelet uses) using accel for pods and HOSTS_DIR for registries;
# host-network pods only (the CNI directories stay empty); the sandbox
# image is $REGISTRY/e2e/pause:1. ctrk = ctr in namespace k8s.io.
start_containerd_cri() {
  CTD_SOCK=$ENV_TMP/ctd.sock
  mkdir -p "$ENV_TMP/cni/bin" "$ENV_TMP/cni/conf"
  cat > "$ENV_TMP/containerd.toml" <<TOML
version = 2
root = "$ENV_TMP/ctd-root"
state = "$ENV_TMP/ctd-state"
[grpc]
  address = "$CTD_SOCK"
[proxy_plugins.accel]
  type = "snapshot"
  address = "$ACCEL_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  # Without it the pause container fails to set its oom_score_adj here.
  restrict_oom_score_adj = true
  sandbox_image = "$REGISTRY/e2e/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "accel"
    disable_snapshot_annotations = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$ENV_TMP/cni/bin"
    conf_dir = "$ENV_TMP/cni/conf"
TOML
  containerd --config "$ENV_TMP/containerd.toml" > "$ENV_TMP/containerd.log" 2>&1 &
  ENV_PIDS+=($!)
  wait_for containerd ctrc version
}

# cri_hosts_dir REGISTRY...: a hosts directory for containerd's CRI plugin
# (plain HTTP, pull and resolve; containerd 1.6 complains about a hosts.toml
# with only `server`); prints its path.
cri_hosts_dir() {
  local dir=$ENV_TMP/cri-certs.d r
  for r in "$@"; do
    mkdir -p "$dir/$r"
    printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "$r" "$r" > "$dir/$r/hosts.toml"
  done
  echo "$dir"
}

ctrc() { ctr --address "$CTD_SOCK" --namespace e2e "$@"; }
ctrk() { ctr --address "$CTD_SOCK" --namespace k8s.io "$@"; }
# cri ARGS...: the test CRI client on containerd's socket.
cri() { "$ACCEL_BIN_DIR/cri_client" --address "unix://$CTD_SOCK" --log-dir "$ENV_TMP/pod-logs" "$@"; }
# mounted_kind KIND: how many layers accel status lists as KIND.
mounted_kind() {
  accelctl status --address "$ACCEL_SOCK" | jq "[.mounted_layers[] | select(.kind == \"$1\")] | length"
}

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

# build_fidelity_image IMAGE: busybox plus two layers that use every entry
# type: regular (empty, big, set-id bits, owners, nanosecond mtime, xattr),
# directories (sticky, empty), symlinks (relative, dangling absolute), a
# hard link, a fifo, a char device; then whiteouts of a lower file and a
# lower directory and an opaque directory.
build_fidelity_image() {
  local image=$1 l l3
  build_busybox_image "$image"
  l=$ENV_TMP/fid-l2
  mkdir -p "$l/data/sub" "$l/empty" "$l/opq/keep" "$l/gone-dir"
  echo regular > "$l/data/file"
  head -c 1048577 /dev/urandom > "$l/data/big"
  printf '' > "$l/data/empty-file"
  echo suid > "$l/data/suid"; chmod 4755 "$l/data/suid"
  echo sgid > "$l/data/sgid"; chmod 2711 "$l/data/sgid"
  chmod 1777 "$l/data/sub"
  echo owned > "$l/data/owned"; chown 1234:5678 "$l/data/owned"
  ln -s file "$l/data/link"
  ln -s /nonexistent/abs "$l/data/dangling"
  ln "$l/data/file" "$l/data/hardlink"
  mkfifo "$l/data/fifo"
  mknod "$l/data/chardev" c 1 3
  echo old > "$l/opq/old-file"
  echo lower > "$l/lower-file"
  setfattr -n user.accel -v hello "$l/data/file" 2>/dev/null || python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.accel", b"hello")' "$l/data/file"
  touch -d '2001-02-03 04:05:06.123456789' "$l/data/file"
  add_layer "$image" "$l" --xattrs --xattrs-include='*'
  # Layer 3: whiteout of a lower file and of a lower dir, an opaque directory.
  l3=$ENV_TMP/fid-l3
  mkdir -p "$l3/opq"
  touch "$l3/.wh.lower-file" "$l3/.wh.gone-dir" "$l3/opq/.wh..wh..opq"
  echo new > "$l3/opq/new-file"
  add_layer "$image" "$l3"
}

# top_snapshot SNAPSHOTTER: the one committed snapshot no other has as parent.
top_snapshot() {
  ctrc snapshots --snapshotter "$1" ls | awk 'NR>1 {print $1, $2}' | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
parents = {r[1] for r in rows if len(r) > 1}
tops = [r[0] for r in rows if r[0] not in parents]
print(tops[0] if len(tops) == 1 else "")'
}

# mount_top_view SNAPSHOTTER DIR: mounts a read-only view of the top layer
# of the only image pulled with SNAPSHOTTER at DIR (unmounted by env_cleanup).
mount_top_view() {
  local sn=$1 dir=$2 top
  top=$(top_snapshot "$sn")
  [[ -n $top ]] || fail "cannot find the top layer for $sn"
  ctrc snapshots --snapshotter "$sn" view "view-$sn-$(basename "$dir")" "$top" >/dev/null
  mkdir -p "$dir"
  ctrc snapshots --snapshotter "$sn" mounts "$dir" "view-$sn-$(basename "$dir")" | sh
}

# use_hosts_dir [REGISTRY...]: a containerd hosts directory telling accel
# the registries ($REGISTRY by default) are plain HTTP; prints its path (pass
# it as the daemon's hosts_dir).
use_hosts_dir() {
  local dir=$ENV_TMP/certs.d r
  (($# > 0)) || set -- "$REGISTRY"
  for r in "$@"; do
    mkdir -p "$dir/$r"
    printf 'server = "http://%s"\n' "$r" > "$dir/$r/hosts.toml"
  done
  echo "$dir"
}

# start_accel_lazy [ARGS...]: start_accel with a config naming the registry's
# hosts directory (use_hosts_dir: plain HTTP) and no background fetch, so
# lazy reads are what the test does; ARGS go to start_accel.
start_accel_lazy() {
  printf 'hosts_dir = "%s"\nbackground_fetch_mibps = 0\n' "$(use_hosts_dir)" > "$ENV_TMP/accel.toml"
  start_accel --config "$ENV_TMP/accel.toml" "$@"
}

accelctl() { "$ACCEL_BIN_DIR/accelctl" "$@"; }
# blob_gets DIGEST: GET requests for that blob in the registry's log.
blob_gets() { grep -c "GET /v2/[^ ]*/blobs/$1" "$ENV_TMP/registry.log" || true; }
# fuse_mounts [DIR]: FUSE mounts under $ENV_TMP/DIR (default accel, the
# daemon's root).
fuse_mounts() { awk -v t="$ENV_TMP/${1:-accel}/" 'index($2, t) == 1 && $3 ~ /^fuse/' /proc/mounts | wc -l; }

# estargz_with_ctr_remote SRC DST: converts SRC to eStargz with Debian's
# ctr-remote (a converter accel did not write) and pushes DST; leaves no
# image records behind.
estargz_with_ctr_remote() {
  ctrc images pull --plain-http "$1" >/dev/null
  ctr-remote --address "$CTD_SOCK" --namespace e2e images convert --estargz --oci "$1" "$2" >/dev/null
  ctrc images push --plain-http "$2" >/dev/null
  ctrc images rm "$1" "$2" >/dev/null
  ctrc content prune references >/dev/null 2>&1 || true
}

# registry_blob_bytes DIGEST: bytes the registry sent for that blob so far
# (its access log: "GET ... HTTP/1.1" STATUS BYTES).
registry_blob_bytes() {
  grep "GET /v2/[^ ]*/blobs/$1 " "$ENV_TMP/registry.log" |
    sed -n 's/.*" \(20[06]\) \([0-9]*\) .*/\2/p' | paste -sd+ | bc
}
