#!/usr/bin/env bash
# Configures and builds accel into build/ (binaries in build/bin/).
# Usage: scripts/build.sh [extra cmake -D options]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${ACCEL_BUILD_DIR:-$top/build}
jobs=${ACCEL_JOBS:-$(nproc)}
cmake -S "$top" -B "$build" -G Ninja "$@" >/dev/null
ninja -C "$build" -j "$jobs"
