#!/usr/bin/env bash
# The same image unpacked by containerd's built-in overlayfs snapshotter and by
# accel gives identical trees (paths, types, modes, owners, sizes, contents,
# link targets, hard links, device numbers, xattrs, mtimes).
source "$(dirname "$0")/env.sh"
env_init fidelity
start_registry
start_accel
start_containerd

build_busybox_image "$ENV_TMP/oci:fid"
l=$ENV_TMP/l2
mkdir -p "$l/data/sub" "$l/empty" "$l/opq/keep" "$l/gone-dir"
echo regular > "$l/data/file"
head -c 1048577 /dev/urandom > "$l/data/big"
printf '' > "$l/data/empty-file"
echo suid > "$l/data/suid"; chmod 4755 "$l/data/suid"
echo sgid > "$l/data/sgid"; chmod 2711 "$l/data/sgid"
chmod 1777 "$l/data/sub"
echo owned > "$l/data/owned"; chown 1234:5678 "$l/data/owned"
ln -s file "$l/data/link"
ln -s /nonexistent/abs "$l/data/dangling"
ln "$l/data/file" "$l/data/hardlink"
mkfifo "$l/data/fifo"
mknod "$l/data/chardev" c 1 3
echo old > "$l/opq/old-file"
echo lower > "$l/lower-file"
setfattr -n user.accel -v hello "$l/data/file" 2>/dev/null || python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.accel", b"hello")' "$l/data/file"
touch -d '2001-02-03 04:05:06.123456789' "$l/data/file"
add_layer "$ENV_TMP/oci:fid" "$l" --xattrs --xattrs-include='*'
# Layer 3: whiteout of a lower file and of a lower dir, an opaque directory.
l3=$ENV_TMP/l3
mkdir -p "$l3/opq"
touch "$l3/.wh.lower-file" "$l3/.wh.gone-dir" "$l3/opq/.wh..wh..opq"
echo new > "$l3/opq/new-file"
add_layer "$ENV_TMP/oci:fid" "$l3"
push_image "$ENV_TMP/oci:fid" e2e/fidelity:v1
ref=$REGISTRY/e2e/fidelity:v1

view_of() { # view_of SNAPSHOTTER DIR: mounts a view of the image's top layer
  local sn=$1 dir=$2 top
  ctrc images pull --plain-http --snapshotter "$sn" "$ref" >/dev/null
  top=$(ctrc snapshots --snapshotter "$sn" ls | awk 'NR>1 {print $1, $2}' | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
parents = {r[1] for r in rows if len(r) > 1}
tops = [r[0] for r in rows if r[0] not in parents]
print(tops[0] if len(tops) == 1 else "")')
  [[ -n $top ]] || fail "cannot find the top layer for $sn"
  ctrc snapshots --snapshotter "$sn" view "view-$sn" "$top" >/dev/null
  mkdir -p "$dir"
  ctrc snapshots --snapshotter "$sn" mounts "$dir" "view-$sn" | sh
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
