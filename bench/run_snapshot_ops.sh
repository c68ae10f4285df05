#!/usr/bin/env bash
# Snapshot RPC latency through containerd: the in-process overlayfs
# snapshotter (baseline) and accel (proxy, one extra gRPC hop) in the same
# run; prints mean/p50/p99 and the ratio. Goal: accel within 1.5x.
#
#   bench/run_snapshot_ops.sh [ITERATIONS]     (default 300)
set -euo pipefail
source "$(dirname "$0")/../tests/e2e/env.sh"
env_init bench-ops
start_accel --log-level warn
start_containerd
"$ACCEL_BIN_DIR/snapshot_ops" --address "$CTD_SOCK" --snapshotters overlayfs,accel \
  --iterations "${1:-300}"
