#!/usr/bin/env bash
# The deploy/ manifests are valid Kubernetes objects, and the checker notices
# a broken one (a DaemonSet without /dev/fuse, a Pod without the node label).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deploy=$here/../../deploy
python3 "$here/check_manifests.py" "$deploy"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$deploy"/*.yaml "$tmp"/
sed -i 's|path: /dev/fuse|path: /dev/null|' "$tmp/accel-daemonset.yaml"
if python3 "$here/check_manifests.py" "$tmp" > "$tmp/out"; then echo "FAIL: missing /dev/fuse not caught"; exit 1; fi
grep -q '/dev/fuse is not mounted' "$tmp/out"
cp "$deploy"/*.yaml "$tmp"/
sed -i 's|key: accel.containerd.io/enabled|key: other|' "$tmp/example-pod.yaml"
if python3 "$here/check_manifests.py" "$tmp" > "$tmp/out"; then echo "FAIL: Pod affinity not checked"; exit 1; fi
echo "PASS test_manifests"
