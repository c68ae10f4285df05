#!/usr/bin/env bash
# Static checks, run by .ci/run before the tests (and by developers before
# they commit):
#
#   format  every C++ file git tracks is formatted as .clang-format says
#           (clang-format 14; `clang-format -i FILE` fixes one).
#   clang   a clang 14 build of everything (daemon, accelctl, tests, bench)
#           with -Wall -Wextra -Wthread-safety -Werror, CMAKE_BUILD_TYPE
#           Debug, in build-clang/: the compiler checks the ABSL_GUARDED_BY /
#           ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations, and a second compiler
#           and build type keep the code portable.
#
#   scripts/check.sh               both
#   scripts/check.sh format        one of them
#
# Environment:
#   ACCEL_CLANG_BUILD_DIR   the clang build directory (default build-clang/)
#   ACCEL_CLANG_CMAKE_ARGS  more -D options for it. This is the one clang
#                           build CI pays for: other clang-only work (the
#                           libFuzzer targets) turns its options on here
#                           rather than adding a build directory.
#   ACCEL_JOBS              parallel compile jobs (default: nproc)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(format clang)

check_format() {
  local files bad=0
  mapfile -t files < <(git ls-files '*.cc' '*.h')
  if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/accel-format.$$; then
    bad=1
    grep -E '^[^ ].*: error:' /tmp/accel-format.$$ | cut -d: -f1 | sort -u | sed 's/^/  not formatted: /' >&2
  fi
  rm -f /tmp/accel-format.$$
  if [[ $bad != 0 ]]; then
    echo "check: clang-format: run clang-format -i on the files above" >&2
    return 1
  fi
  echo "check: clang-format: ${#files[@]} files formatted"
}

check_clang() {
  local build=${ACCEL_CLANG_BUILD_DIR:-$top/build-clang}
  local jobs=${ACCEL_JOBS:-$(nproc)}
  # shellcheck disable=SC2086  # ACCEL_CLANG_CMAKE_ARGS is a list of options
  cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DACCEL_WERROR=ON \
    -DACCEL_ESTARGZ_FUZZ=OFF ${ACCEL_CLANG_CMAKE_ARGS:-} >/dev/null
  ninja -C "$build" -j "$jobs"
  echo "check: clang $(clang++ --version | head -1 | grep -oE '[0-9]+\.[0-9.]+' | head -1): built with -Wthread-safety -Werror in $build"
}

for step in "${steps[@]}"; do
  case $step in
    format) check_format ;;
    clang) check_clang ;;
    *) echo "usage: scripts/check.sh [format] [clang]" >&2; exit 2 ;;
  esac
done
