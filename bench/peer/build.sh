#!/usr/bin/env bash
# Builds bench/peer/stargz_peer.go (the stargz-snapshotter peer daemon for
# bench/run_peer.sh) offline from Debian's Go library packages:
#
#   bench/peer/build.sh      -> ${ACCEL_BUILD_DIR:-build}/bin/stargz-peer
#
# Needs: golang-go, golang-github-containerd-stargz-snapshotter-dev and its
# dependencies (golang-github-containerd-containerd-dev, grpc, BurntSushi
# toml, ...), all from Debian. GOPATH mode (GO111MODULE=off) against
# /usr/share/gocode; the build cache stays under the build directory.
#
# Debian ships no k8s.io/cri-api, which the library's
# service/resolver/cri.go imports (CRI registry config, used only by the
# upstream containerd plugin, not by this program): the build hides that
# one file with `go build -overlay` unless cri-api is installed.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${ACCEL_BUILD_DIR:-build}
[[ $build == /* ]] || build=$top/$build
out=$build/bin/stargz-peer
work=$build/peer
gocode=/usr/share/gocode
mkdir -p "$build/bin" "$work"

command -v go >/dev/null || { echo "build.sh: 'go' not found: apt-get install golang-go" >&2; exit 1; }
sg=$gocode/src/github.com/containerd/stargz-snapshotter
[[ -d $sg/service ]] || {
  echo "build.sh: missing Go package github.com/containerd/stargz-snapshotter/service:" \
       "apt-get install golang-github-containerd-stargz-snapshotter-dev" >&2; exit 1; }

overlay=()
if [[ ! -d $gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1alpha2 && -f $sg/service/resolver/cri.go ]]; then
  printf '{"Replace":{"%s":""}}\n' "$sg/service/resolver/cri.go" > "$work/overlay.json"
  overlay=(-overlay "$work/overlay.json")
fi

log=$work/build.log
cd "$top/bench/peer"
if ! env GOPATH="$gocode" GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
     GOCACHE="$work/gocache" go build "${overlay[@]}" -trimpath -o "$out.tmp" . > "$log" 2>&1; then
  cat "$log" >&2
  missing=$(sed -n 's/.*cannot find package "\([^"]*\)".*/\1/p' "$log" | sort -u)
  if [[ -n $missing ]]; then
    echo "build.sh: missing Go package(s) (install the Debian golang-*-dev package providing each):" >&2
    sed 's/^/  /' <<< "$missing" >&2
  fi
  echo "build.sh: go build failed (log: $log)" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "built $out"
