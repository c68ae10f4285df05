#!/usr/bin/env bash
# The same image unpacked by containerd's built-in overlayfs snapshotter and by
# accel gives identical trees (paths, types, modes, owners, sizes, contents,
# link targets, hard links, device numbers, xattrs, mtimes).
source "$(dirname "$0")/env.sh"
env_init fidelity
start_registry
start_accel
start_containerd

build_fidelity_image "$ENV_TMP/oci:fid"
push_image "$ENV_TMP/oci:fid" e2e/fidelity:v1
ref=$REGISTRY/e2e/fidelity:v1

view_of() { # view_of SNAPSHOTTER DIR
  ctrc images pull --plain-http --snapshotter "$1" "$ref" >/dev/null
  mount_top_view "$1" "$2"
}
view_of overlayfs "$ENV_TMP/tree-overlayfs"
view_of accel "$ENV_TMP/tree-accel"
# The checks below prove the image exercised what it should.
[[ ! -e $ENV_TMP/tree-accel/lower-file && ! -e $ENV_TMP/tree-accel/gone-dir ]] || fail "whiteouts not applied"
[[ ! -e $ENV_TMP/tree-accel/opq/old-file && -e $ENV_TMP/tree-accel/opq/new-file ]] || fail "opaque dir not applied"
[[ $(stat -c %u:%g "$ENV_TMP/tree-accel/data/owned") == 1234:5678 ]] || fail "owner lost"
python3 "$(dirname "$0")/treediff.py" "$ENV_TMP/tree-overlayfs" "$ENV_TMP/tree-accel" ||
  fail "trees differ (A = overlayfs, B = accel)"
echo "PASS test_fidelity"
