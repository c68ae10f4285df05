#!/usr/bin/env bash
# accelctl inspect/copy through a pull-through cache configured in a
# containerd hosts directory; the same commands after the cache is stopped
# (fallback to the upstream); a corrupted blob in the upstream's storage is
# detected; bad input gives one clear line and a non-zero exit.
source "$(dirname "$0")/lib_registry.sh"
reg_init mirror

reg_start up
reg_start cache "proxy:" "  remoteurl: http://$REG_up"
reg_start dst

make_image "$RT/img" multi --platforms linux/amd64,linux/arm64 --layer-size 200000
make_image "$RT/img" single --layer-size 5000 --seed single
push_layout "$RT/img:multi" "$REG_up/test/app:multi" --all
push_layout "$RT/img:single" "$REG_up/test/app:single"

# Hosts dir: requests for the upstream go to the cache first.
hosts=$RT/certs.d
mkdir -p "$hosts/$REG_up"
cat >"$hosts/$REG_up/hosts.toml" <<TOML
server = "http://$REG_up"

[host."http://$REG_cache"]
  capabilities = ["pull", "resolve"]
TOML
A=(--hosts-dir "$hosts" --plain-http)

# 1. inspect through the cache.
out=$("$ACCELCTL" inspect "${A[@]}" --platform linux/arm64 "$REG_up/test/app:multi") ||
  fail "inspect through cache"
echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["platform"] == "linux/arm64", j
assert j["index"]["mediaType"] == "application/vnd.oci.image.index.v1+json", j
assert len(j["layers"]) == 2 and all(l["size"] > 0 for l in j["layers"]), j
assert j["layers"][1]["annotations"]["org.example.layer"] == "1", j
assert j["config"]["digest"].startswith("sha256:")
' || fail "inspect JSON: $out"
grep -q 'GET /v2/test/app/manifests/multi' "$RT/registry-cache.log" || fail "cache was not asked"
echo "ok: inspect through the pull-through cache"

raw_up=$(curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG_up/v2/test/app/manifests/multi" | sha256sum)
raw_ctl=$("$ACCELCTL" inspect "${A[@]}" --raw "$REG_up/test/app:multi" | sha256sum)
[[ $raw_up == "$raw_ctl" ]] || fail "--raw bytes differ from the registry's"
echo "ok: inspect --raw gives the manifest bytes unchanged"

# 2. copy through the cache to another registry (uploads), then again (all exist).
"$ACCELCTL" copy "${A[@]}" "$REG_up/test/app:multi" "$REG_dst/copied/app:v1" >"$RT/copy1.err" 2>&1 ||
  fail "copy through cache: $(cat "$RT/copy1.err")"
grep -q 'copied (' "$RT/copy1.err" || fail "copy did not upload: $(cat "$RT/copy1.err")"
grep -q 'GET /v2/test/app/blobs/sha256' "$RT/registry-cache.log" || fail "blobs did not come from the cache"
"$ACCELCTL" copy "${A[@]}" "$REG_up/test/app:multi" "$REG_dst/copied/app:v1" >"$RT/copy2.err" 2>&1 ||
  fail "second copy"
! grep -q 'copied (' "$RT/copy2.err" || fail "second copy uploaded again"
d1=$("$ACCELCTL" inspect --plain-http --raw "$REG_dst/copied/app:v1" | sha256sum)
[[ $d1 == "$raw_up" ]] || fail "copied index differs"
for p in linux/amd64 linux/arm64; do
  "$ACCELCTL" inspect --plain-http --platform $p "$REG_dst/copied/app:v1" >/dev/null || fail "copied $p"
done
# Single platform, to a repository of the same registry (blob mounts).
"$ACCELCTL" copy --plain-http --platform linux/amd64 "$REG_dst/copied/app:v1" "$REG_dst/one/app:amd64" \
  >"$RT/copy3.err" 2>&1 || fail "copy one platform: $(cat "$RT/copy3.err")"
grep -q 'mounted (' "$RT/copy3.err" || fail "same-registry copy did not mount: $(cat "$RT/copy3.err")"
mt=$("$ACCELCTL" inspect --plain-http --raw "$REG_dst/one/app:amd64" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mediaType"])')
[[ $mt == application/vnd.oci.image.manifest.v1+json ]] || fail "one-platform copy is $mt"
echo "ok: copy (upload, skip existing, mount, one platform)"

# 3. The cache stopped: the same commands succeed through the upstream.
reg_stop cache
"$ACCELCTL" inspect "${A[@]}" "$REG_up/test/app:single" >/dev/null || fail "inspect without cache"
"$ACCELCTL" copy "${A[@]}" "$REG_up/test/app:single" "$REG_dst/copied/single:v1" >"$RT/copy4.err" 2>&1 ||
  fail "copy without cache: $(cat "$RT/copy4.err")"
grep -q 'copied (' "$RT/copy4.err" || fail "copy without cache uploaded nothing"
echo "ok: cache down, fell back to the upstream"

# 4. A blob corrupted in the upstream's storage: digest mismatch, non-zero exit.
layer=$("$ACCELCTL" inspect --plain-http "$REG_up/test/app:single" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
f=$(blob_path "$REG_up_DATA" "$layer")
[[ -f $f ]] || fail "blob file $f not found"
size=$(stat -c %s "$f")
head -c "$size" /dev/zero >"$f"
expect_fail err "$ACCELCTL" copy --plain-http "$REG_up/test/app:single" "$REG_dst/corrupt/app:v1"
[[ $err == *"digest mismatch"* && $err == *"$layer"* ]] || fail "corruption message: $err"
[[ $(echo "$err" | grep -c .) -eq 1 ]] || fail "want one line, got: $err"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_dst/v2/corrupt/app/manifests/v1")
[[ $code == 404 ]] || fail "a manifest was pushed despite the corrupt blob"
echo "ok: corrupted blob detected: $err"

# 5. Bad input: one line naming what failed, non-zero exit.
expect_fail err "$ACCELCTL" inspect "UPPER/Case:x"
[[ $err == *'invalid reference "UPPER/Case:x"'* ]] || fail "bad reference: $err"
expect_fail err "$ACCELCTL" inspect "${A[@]}" "$REG_up/test/app:missing"
[[ $err == *"manifest unknown"* && $err == *":missing"* ]] || fail "missing tag: $err"
closed=127.0.0.1:$(free_port)
expect_fail err "$ACCELCTL" inspect --plain-http "$closed/x/y:1"
[[ $err == *"$closed"* && $err == *"onnect"* ]] || fail "unreachable host: $err"
expect_fail err "$ACCELCTL" inspect --plain-http --platform windows/s390x "$REG_up/test/app:multi"
[[ $err == *"no manifest for platform windows/s390x"* ]] || fail "platform: $err"
expect_fail err "$ACCELCTL" inspect --hosts-dir "$RT/nope" "$REG_up/test/app:multi"
[[ $err == *"--hosts-dir"* ]] || fail "missing hosts dir: $err"
echo 'server = 12' >"$hosts/$REG_up/hosts.toml"
expect_fail err "$ACCELCTL" inspect "${A[@]}" "$REG_up/test/app:multi"
[[ $err == *hosts.toml* && $err == *server* ]] || fail "bad hosts.toml: $err"
for e in "$err"; do [[ $(echo "$e" | grep -c .) -eq 1 ]] || fail "not one line: $e"; done
echo "ok: bad input"
echo PASS
