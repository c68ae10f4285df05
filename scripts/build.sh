#!/usr/bin/env bash
# Configures and builds accel into build/ (binaries in build/bin/).
# Usage: scripts/build.sh [extra cmake -D options]
# Warnings are errors when ACCEL_WERROR=1 or CI=true (-DACCEL_WERROR=ON);
# otherwise the build directory keeps what it was configured with (default
# OFF, so a newer compiler's new warning does not stop a user's build).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${ACCEL_BUILD_DIR:-$top/build}
jobs=${ACCEL_JOBS:-$(nproc)}
werror=()
if [[ ${ACCEL_WERROR:-} == 1 || ${CI:-} == true ]]; then werror=(-DACCEL_WERROR=ON); fi
cmake -S "$top" -B "$build" -G Ninja "${werror[@]}" "$@" >/dev/null
ninja -C "$build" -j "$jobs"
