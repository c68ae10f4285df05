#!/usr/bin/env bash
# Installs every Debian 12 package that accel's build, tests, benchmarks and demo need.
# README.md and .ci/run both call this script: it is the one install list.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config ninja-build clang clang-format
  # libraries
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev linux-libc-dev libsqlite3-dev nlohmann-json3-dev libtomlplusplus-dev
  libsystemd-dev libarchive-dev libcurl4-openssl-dev libssl-dev libzstd-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # runtime and test peers
  fuse3 containerd runc docker-registry umoci skopeo busybox-static
  stargz-snapshotter golang-github-containerd-stargz-snapshotter-dev golang-go
  sqlite3 jq curl util-linux procps iproute2 python3 python3-yaml openssl apache2-utils
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: must run as root (it calls apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
