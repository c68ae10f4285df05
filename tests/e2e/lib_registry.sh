# The registry end-to-end tests' additions to the harness (tests/e2e/env.sh,
# which this file sources: fail, free_port, bg_start, wait_http and
# start_registry NAME come from there). Sourced.
#
#   reg_init NAME                 env_init, $RT (= $ENV_TMP), $ACCELCTL, and a
#                                 private $DOCKER_CONFIG (never the user's)
#   reg_start NAME [YAML...]      start_registry NAME: $REG_<NAME>=127.0.0.1:PORT,
#                                 $REG_<NAME>_PID, $REG_<NAME>_DATA (storage dir)
#   reg_stop NAME                 stops that registry (by PID)
#   make_image DIR TAG [ARGS...]  OCI layout via registry_testimage.py
#   push_layout DIR:TAG HOST/REPO:TAG [--all]   skopeo copy into a registry
#   expect_fail OUTVAR CMD...     runs CMD, which must fail; its stderr in OUTVAR
#   blob_path DATA DIGEST         a blob's file in a registry's storage

REG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$REG_LIB_DIR/env.sh"
ACCELCTL=$ACCEL_BIN_DIR/accelctl

reg_init() {
  env_init "reg-$1"
  RT=$ENV_TMP
  export DOCKER_CONFIG=$RT/docker-config
  mkdir -p "$DOCKER_CONFIG"
}

reg_start() { start_registry "$@"; }

reg_stop() {
  local pid
  pid=$(eval "echo \$REG_${1}_PID")
  stop_pid "$pid"
  forget_pid "$pid"
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
