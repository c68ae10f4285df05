#!/usr/bin/env bash
# `ctr snapshots` against accel gives the same results and errors as against
# containerd's built-in overlayfs snapshotter, command for command.
source "$(dirname "$0")/env.sh"
env_init snapcli
start_accel
# `ctr snapshots view` sets no gc.root label: keep containerd's GC from
# collecting the view in the middle of the sequence.
CTD_GC_ON_REQUEST=1 start_containerd

# run_sequence SNAPSHOTTER: prints one normalized outcome line per command.
run_sequence() {
  local sn=$1 c
  c=(ctrc snapshots --snapshotter "$sn")
  outcome() { # outcome LABEL CMD...: "LABEL ok" or "LABEL error: <kind>"
    local label=$1 out rc; shift
    set +e; out=$("$@" 2>&1); rc=$?; set -e
    if ((rc == 0)); then echo "$label ok"; return; fi
    local kind=other
    case $out in
      *"already exists"*) kind=already-exists ;;
      *"not found"*|*"does not exist"*) kind=not-found ;;
      *"failed precondition"*) kind=failed-precondition ;;
      *"invalid argument"*) kind=invalid-argument ;;
    esac
    echo "$label error: $kind"
  }
  outcome prepare-base "${c[@]}" prepare base-a
  outcome prepare-dup "${c[@]}" prepare base-a
  outcome commit-base "${c[@]}" commit base base-a
  outcome commit-missing "${c[@]}" commit x missing
  outcome prepare-child "${c[@]}" prepare child base
  outcome prepare-on-active "${c[@]}" prepare bad child
  outcome prepare-on-missing "${c[@]}" prepare bad2 missing-parent
  outcome view "${c[@]}" view v base
  outcome commit-view "${c[@]}" commit vv v
  outcome commit-child "${c[@]}" commit child-c child
  outcome commit-taken "${c[@]}" prepare other base
  outcome commit-to-taken "${c[@]}" commit base other
  outcome label "${c[@]}" label base team=ml
  echo "label-value $("${c[@]}" info base | python3 -c 'import json,sys; print(json.load(sys.stdin)["Labels"].get("team"))')"
  outcome unlabel "${c[@]}" label base team=
  echo "unlabel-value $("${c[@]}" info base | python3 -c 'import json,sys; print(json.load(sys.stdin)["Labels"].get("team"))')"
  echo "kind-child $("${c[@]}" info child-c | python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["Kind"], i["Parent"])')"
  echo "kind-view $("${c[@]}" info v | python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["Kind"], i["Parent"])')"
  outcome info-missing "${c[@]}" info missing
  outcome rm-missing "${c[@]}" rm missing
  outcome rm-parent "${c[@]}" rm base
  outcome mounts-missing "${c[@]}" mounts /mnt missing
  echo "tree $("${c[@]}" tree | tr -s ' \n' ' ')"
  echo "usage-keys $("${c[@]}" usage | tail -n +2 | awk '{print $1}' | sort | tr '\n' ' ')"
  outcome rm-view "${c[@]}" rm v
  outcome rm-other "${c[@]}" rm other
  outcome rm-child "${c[@]}" rm child-c
  outcome rm-base "${c[@]}" rm base
  echo "left $("${c[@]}" ls | tail -n +2 | wc -l)"
}

run_sequence overlayfs > "$ENV_TMP/overlayfs.out"
run_sequence accel > "$ENV_TMP/accel.out"
cat "$ENV_TMP/accel.out"
if ! diff -u "$ENV_TMP/overlayfs.out" "$ENV_TMP/accel.out"; then
  fail "accel differs from overlayfs (diff above: - overlayfs, + accel)"
fi
# The sequence must have exercised every kind of answer.
for want in "prepare-dup error: already-exists" "commit-missing error: not-found" \
            "rm-parent error: failed-precondition" "commit-view error: " "label-value ml" \
            "unlabel-value None" "left 0"; do
  grep -q "^$want" "$ENV_TMP/accel.out" || fail "expected '$want' in: $(cat "$ENV_TMP/accel.out")"
done

# Usage of an active snapshot measures its directory.
ctrc snapshots --snapshotter accel prepare u-a >/dev/null
mkdir -p "$ENV_TMP/m"
ctrc snapshots --snapshotter accel mounts "$ENV_TMP/m" u-a | sh
head -c 3000000 /dev/zero > "$ENV_TMP/m/big"
umount "$ENV_TMP/m"
size=$(ctrc snapshots --snapshotter accel usage u-a | awk 'NR==2 {print $2 $3}')
[[ $size == 2.9MiB || $size == 2.8MiB || $size == 3.0MiB ]] || fail "usage of u-a: $size"
echo "PASS test_snapshots_cli"
