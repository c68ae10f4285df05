#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test
# (unit tests and end-to-end tests against a real containerd, runc and
# registry started under temporary directories). Needs root (mounts, FUSE,
# containerd).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -L unit         only unit tests (ctest label)
#   scripts/test.sh -R e2e.pull     any ctest selection
#
# ACCEL_LONG=1 runs the long soak/fault variants (see README); CI runs the
# short ones.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${ACCEL_BUILD_DIR:-$top/build}
if [[ ${ACCEL_SKIP_INSTALL:-0} != 1 ]]; then
  "$top/scripts/install-deps.sh"
fi
"$top/scripts/build.sh"
cd "$build"
# e2e tests each start their own containerd/registry; run them one at a time
# on 2 cores to keep timings sane, unit tests in parallel.
ctest --output-on-failure -j "$(nproc)" -LE e2e "$@"
ctest --output-on-failure -j 1 -L e2e "$@"
