# Helpers for the registry end-to-end tests (test_registry_*.sh). Sourced.
# Everything listens on 127.0.0.1 only, lives under one mktemp directory,
# and is stopped by the PID this file started (never by name), also when a
# test fails (EXIT trap).
#
#   reg_init NAME                 $RT (temp dir), trap, $ACCELCTL
#   free_port                     prints an unused 127.0.0.1 port
#   reg_start NAME [YAML...]      starts docker-registry; sets REG_<NAME>=127.0.0.1:PORT,
#                                 REG_<NAME>_PID, REG_<NAME>_DATA (storage dir).
#                                 Extra YAML lines are appended to its config
#                                 (e.g. a proxy: or auth: section).
#   reg_stop NAME                 stops that registry (by PID)
#   bg_start NAME CMD...          starts a helper process; its PID in $BG_PID
#   wait_http URL [CURL ARGS...]  waits until URL answers (any HTTP status)
#   make_image DIR TAG [ARGS...]  OCI layout via registry_testimage.py
#   push_layout DIR:TAG HOST/REPO:TAG [--all]   skopeo copy into a registry
#   fail MSG                      prints MSG and the logs, exits 1
#   expect_fail OUTVAR CMD...     runs CMD, which must fail; its stderr in OUTVAR

set -euo pipefail
REG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCEL_BIN_DIR=${ACCEL_BIN_DIR:?ACCEL_BIN_DIR must point at the build bin directory}
ACCELCTL=$ACCEL_BIN_DIR/accelctl
REG_PIDS=()

reg_init() {
  RT=$(mktemp -d "/tmp/accel-reg-$1.XXXXXX")
  trap reg_cleanup EXIT
  # Never read the invoking user's docker credentials.
  export DOCKER_CONFIG=$RT/docker-config
  mkdir -p "$DOCKER_CONFIG"
}

reg_cleanup() {
  local rc=$?
  set +e
  local p
  for p in "${REG_PIDS[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${REG_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  [[ -n ${RT:-} && -d $RT ]] && rm -rf "$RT"
  exit $rc
}

fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$RT"/*.log; do
    [[ -f $f ]] || continue
    echo "--- $f (last 5 lines)" >&2
    tail -5 "$f" | cut -c1-400 >&2
  done
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {
  local url=$1; shift
  for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 2 "$@" "$url"; then return 0; fi
    sleep 0.1
  done
  fail "$url did not come up"
}

# bg_start NAME CMD...: runs CMD in the background, log $RT/NAME.log, PID in $BG_PID.
bg_start() {
  local name=$1; shift
  "$@" >"$RT/$name.log" 2>&1 &
  BG_PID=$!
  REG_PIDS+=("$BG_PID")
}

# reg_start NAME [extra yaml lines...]; TLS: set REG_TLS_CERT/REG_TLS_KEY first.
reg_start() {
  local name=$1; shift
  local port; port=$(free_port)
  local dir=$RT/reg-$name
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: info"
    echo "  accesslog:"
    echo "    disabled: false"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/data"
    echo "  delete:"
    echo "    enabled: true"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    echo "  secret: accel-test-secret"
    if [[ -n ${REG_TLS_CERT:-} ]]; then
      echo "  tls:"
      echo "    certificate: $REG_TLS_CERT"
      echo "    key: $REG_TLS_KEY"
    fi
    local line
    for line in "$@"; do echo "$line"; done
  } >"$dir/config.yml"
  bg_start "registry-$name" docker-registry serve "$dir/config.yml"
  local pid=$BG_PID
  eval "REG_${name}=127.0.0.1:$port"
  eval "REG_${name}_PID=$pid"
  eval "REG_${name}_DATA=$dir/data"
  if [[ -n ${REG_TLS_CERT:-} ]]; then
    wait_http "https://127.0.0.1:$port/v2/" -k
  else
    wait_http "http://127.0.0.1:$port/v2/"
  fi
}

reg_stop() {
  local pid; eval "pid=\$REG_${1}_PID"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

make_image() {
  local dir=$1 tag=$2; shift 2
  python3 "$REG_LIB_DIR/registry_testimage.py" "$dir" "$tag" "$@" >/dev/null
}

push_layout() {
  local src=$1 dst=$2; shift 2
  skopeo copy -q "$@" --dest-tls-verify=false "oci:$src" "docker://$dst" >"$RT/skopeo.log" 2>&1 ||
    fail "skopeo copy $src $dst"
}

# expect_fail VAR cmd...: the command must exit non-zero; VAR gets its stderr.
expect_fail() {
  local __var=$1; shift
  local __err __rc=0
  __err=$("$@" 2>&1 >/dev/null) || __rc=$?
  [[ $__rc -ne 0 ]] || fail "expected failure: $*"
  printf -v "$__var" '%s' "$__err"
}

# Blob file of DIGEST in a registry's filesystem storage.
blob_path() {
  local data=$1 digest=$2
  local hex=${digest#sha256:}
  echo "$data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}
