#!/usr/bin/env bash
# accelctl estargz output is readable by other eStargz implementations:
# Debian's ctr-remote reads each layer's TOC and finds the digest our
# annotation names; containerd's built-in overlayfs snapshotter unpacks it
# like any gzip layer; accel mounts it lazily; every view equals the source
# image (every entry type, whiteouts, an opaque dir) unpacked by overlayfs.
source "$(dirname "$0")/env.sh"
env_init estargz_convert
start_registry
start_accel_lazy
start_containerd
ctr_remote() { ctr-remote --address "$CTD_SOCK" --namespace e2e "$@"; }

build_fidelity_image "$ENV_TMP/oci:app"
push_image "$ENV_TMP/oci:app" e2e/app:v1
src=$REGISTRY/e2e/app:v1
dst=$REGISTRY/e2e/app:v1-esgz
printf '/bin/busybox\n/data/file\n/not/there\n' > "$ENV_TMP/prioritize"

echo "== accelctl estargz"
accelctl estargz --plain-http --prioritize "$ENV_TMP/prioritize" --chunk-size 65536 "$src" "$dst" \
  > "$ENV_TMP/convert.out" || fail "estargz conversion failed: $(cat "$ENV_TMP/convert.out")"
grep -q "converted $src to eStargz $dst" "$ENV_TMP/convert.out" || fail "no summary: $(cat "$ENV_TMP/convert.out")"
manifest=$(skopeo inspect --raw --tls-verify=false "docker://$dst")
[[ $(jq '.layers | length' <<< "$manifest") == 3 ]] || fail "target has $(jq '.layers | length' <<< "$manifest") layers"

echo "== ctr-remote reads every layer's TOC and agrees with the annotation"
ctrc content fetch --plain-http "$dst" >/dev/null
for i in 0 1 2; do
  d=$(jq -r ".layers[$i].digest" <<< "$manifest")
  want=$(jq -r ".layers[$i].annotations[\"containerd.io/snapshot/stargz/toc.digest\"]" <<< "$manifest")
  got=$(ctr_remote images get-toc-digest "$d")
  [[ $got == "$want" ]] || fail "layer $i: ctr-remote says TOC $got, annotation says $want"
done
# The prioritized file comes first in the busybox layer's TOC.
d0=$(jq -r '.layers[0].digest' <<< "$manifest")
ctr_remote images get-toc-digest --dump-toc "$d0" | python3 -c '
import json, sys
names = [e["name"] for e in json.load(sys.stdin)["entries"] if e.get("type") == "reg"]
assert names[0].lstrip("./") == "bin/busybox", names[:3]
assert any(n.endswith(".prefetch.landmark") for n in names), names' || fail "prioritized file is not first"

echo "== overlayfs unpacks it like any gzip image; accel mounts it lazily"
ctrc images pull --plain-http --snapshotter overlayfs "$src" >/dev/null
mount_top_view overlayfs "$ENV_TMP/tree-source"
out=$(ctr --address "$CTD_SOCK" --namespace plain images pull --plain-http --snapshotter overlayfs "$dst" >/dev/null &&
  ctr --address "$CTD_SOCK" --namespace plain run --rm --snapshotter overlayfs "$dst" c1 cat /data/file)
[[ $out == regular ]] || fail "overlayfs run read [$out]"
ctr_remote images rpull --plain-http --snapshotter accel "$dst" >/dev/null
grep -q 'mounted eStargz layer lazily' "$ENV_TMP/accel.log" || fail "accel did not mount the layers lazily"
out=$(ctrc run --rm --snapshotter accel "$dst" c2 cat /data/file)
[[ $out == regular ]] || fail "accel run read [$out]"
mount_top_view accel "$ENV_TMP/tree-lazy"
python3 "$(dirname "$0")/treediff.py" "$ENV_TMP/tree-source" "$ENV_TMP/tree-lazy" ||
  fail "trees differ (A = source via overlayfs, B = accelctl estargz output via accel)"

echo "== bad input is refused"
if accelctl estargz --plain-http "$REGISTRY/e2e/app:v1" "$REGISTRY/e2e/app:v1-esgz" --prioritize /nonexistent 2>/dev/null; then
  fail "a missing --prioritize file was accepted"
fi
echo "PASS test_estargz_convert"
