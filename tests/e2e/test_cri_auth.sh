#!/usr/bin/env bash
# kubelet credentials for lazy layers: a private registry (docker-registry
# with htpasswd basic auth) holds an eStargz image; containerd's CRI plugin
# uses accel as its snapshotter, and accel serves the CRI image proxy
# (--cri-image-address; kubelet's --image-service-endpoint) in front of
# containerd's CRI socket. Checks:
#   - without the proxy (CRI pull with credentials straight to containerd),
#     accel never sees the credentials: it cannot mount the layers lazily and
#     they are downloaded in full (this is why the proxy exists);
#   - through the proxy (PullImage with AuthConfig username/password, as
#     kubelet sends imagePullSecrets), the layers are lazy FUSE mounts, a pod
#     (RuntimeService straight to containerd) reads a file that was not
#     prefetched, and the registry saw authenticated range requests;
#   - the other ImageService calls pass through the proxy;
#   - the password is in neither accel's log nor anything under its root.
source "$(dirname "$0")/env.sh"
env_init cri_auth
USER_NAME=kube-puller
PASS="Pw-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')-x9"
B64=$(printf '%s:%s' "$USER_NAME" "$PASS" | base64 -w0)

# An open registry (images are built and converted there) and a private one.
start_registry
htpasswd -Bbn "$USER_NAME" "$PASS" > "$ENV_TMP/htpasswd" 2>/dev/null
start_registry priv "auth:" "  htpasswd:" "    realm: accel-private" "    path: $ENV_TMP/htpasswd"
PRIV=$REG_priv
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://$PRIV/v2/") == 401 ]] ||
  fail "the private registry does not ask for credentials"

# accel: plain HTTP to both registries; no credentials configured.
HOSTS=$(use_hosts_dir "$REGISTRY" "$PRIV")
cat > "$ENV_TMP/accel.toml" <<TOML
hosts_dir = "$HOSTS"
background_fetch_mibps = 0
TOML
CTD_SOCK=$ENV_TMP/ctd.sock
PROXY_SOCK=$ENV_TMP/accel-cri.sock
start_accel --config "$ENV_TMP/accel.toml" --cri-image-address "$PROXY_SOCK" --cri-upstream "$CTD_SOCK"
[[ -S $PROXY_SOCK ]] || fail "no CRI proxy socket at $PROXY_SOCK"
[[ $(stat -c %a "$PROXY_SOCK") == 600 ]] || fail "CRI proxy socket mode $(stat -c %a "$PROXY_SOCK") (want 600)"

CRI_HOSTS=$(cri_hosts_dir "$REGISTRY" "$PRIV")
start_containerd_cri "$CRI_HOSTS"

cri_proxy() { "$ACCEL_BIN_DIR/cri_client" --address "unix://$PROXY_SOCK" --log-dir "$ENV_TMP/pod-logs" "$@"; }
# priv_blob_bytes DIGEST: bytes the private registry sent for that blob.
priv_blob_bytes() {
  grep "GET /v2/[^ ]*/blobs/$1 " "$ENV_TMP/registry-priv.log" |
    sed -n 's/.*" \(20[06]\) \([0-9]*\) .*/\2/p' | paste -sd+ | bc
}
# lazy_image NAME: an eStargz image (ctr-remote) on the private registry,
# with layers no other image shares; prints its reference.
lazy_image() {
  local name=$1 l=$ENV_TMP/$1-l2
  echo "$name" > "$ENV_TMP/$name-marker"
  build_busybox_image "$ENV_TMP/oci:$name" "$ENV_TMP/$name-marker=/marker"
  mkdir -p "$l/data" "$l/etc"
  head -c $((24 << 20)) /dev/urandom > "$l/data/big.bin"
  head -c $((1 << 20)) /dev/urandom > "$l/data/mid.bin"
  echo "small $name" > "$l/etc/small.txt"
  add_layer "$ENV_TMP/oci:$name" "$l"
  push_image "$ENV_TMP/oci:$name" "e2e/$name:v1"
  estargz_with_ctr_remote "$REGISTRY/e2e/$name:v1" "$REGISTRY/e2e/$name:esgz" 
  skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds "$USER_NAME:$PASS" "docker://$REGISTRY/e2e/$name:esgz" "docker://$PRIV/team/$name:esgz" ||
    fail "skopeo copy to the private registry"
  echo "$PRIV/team/$name:esgz"
}

echo "== containerd with the CRI plugin, accel as its snapshotter and CRI image proxy"
[[ -x $ACCEL_BIN_DIR/cri_client ]] || fail "no $ACCEL_BIN_DIR/cri_client (build the tests)"
echo pause > "$ENV_TMP/pause-marker"
build_busybox_image "$ENV_TMP/oci:pause" "$ENV_TMP/pause-marker=/pause-marker"
umoci config --image "$ENV_TMP/oci:pause" --config.cmd sleep --config.cmd 3600
push_image "$ENV_TMP/oci:pause" e2e/pause:1
wait_for "the CRI plugin (pull of the pause image)" cri pull "$REGISTRY/e2e/pause:1"

neg=$(lazy_image neg)
pos=$(lazy_image pos)
manifest=$(skopeo inspect --raw --creds "$USER_NAME:$PASS" --tls-verify=false "docker://$pos")
jq -e '.layers[0].annotations["containerd.io/snapshot/stargz/toc.digest"]' <<< "$manifest" >/dev/null ||
  fail "the private copy lost the eStargz annotations"
big_layer=$(jq -r '.layers | max_by(.size) | .digest' <<< "$manifest")
big_size=$(jq -r '.layers | max_by(.size) | .size' <<< "$manifest")
neg_big=$(skopeo inspect --raw --creds "$USER_NAME:$PASS" --tls-verify=false "docker://$neg" |
  jq -r '.layers | max_by(.size) | .digest')

echo "== the private registry refuses a pull without credentials"
if cri_proxy pull "$pos" > /dev/null 2> "$ENV_TMP/nocreds.err"; then
  fail "pulled $pos without credentials"
fi
echo "  $(head -c 200 "$ENV_TMP/nocreds.err")"

echo "== without the proxy: credentials reach containerd only, no lazy layers"
cri --user "$USER_NAME:$PASS" pull "$neg" > /dev/null || fail "CRI pull of $neg (straight to containerd) failed"
[[ $(mounted_kind estargz) == 0 ]] ||
  fail "accel mounted $(mounted_kind estargz) layers lazily without credentials"
grep -q 'requires authentication' "$ENV_TMP/accel.log" ||
  fail "accel did not log that the registry wanted credentials"
fetched=$(priv_blob_bytes "$neg_big")
((${fetched:-0} >= $(skopeo inspect --raw --creds "$USER_NAME:$PASS" --tls-verify=false "docker://$neg" |
  jq -r '.layers | max_by(.size) | .size'))) || fail "the big layer of $neg was not downloaded in full (${fetched:-0} bytes)"
out=$(cri run "$neg" cat /etc/small.txt) || fail "pod on $neg failed: [$out]"
[[ $out == "small neg" ]] || fail "pod on $neg read [$out]"
echo "  full download of the big layer (${fetched} bytes), no estargz mounts"

echo "== through the proxy: PullImage with credentials -> lazy layers"
cri_proxy --user "$USER_NAME:$PASS" pull "$pos" > "$ENV_TMP/pull.out" || fail "CRI pull of $pos through the proxy failed"
[[ -n $(cat "$ENV_TMP/pull.out") ]] || fail "the proxy returned no image reference"
[[ $(mounted_kind estargz) == 2 ]] || fail "accel status: $(mounted_kind estargz) estargz layers mounted (want 2)"
grep -q "using its credentials for lazy layers.*host=\"$PRIV\"" "$ENV_TMP/accel.log" ||
  fail "the proxy did not log taking the pull's credentials for $PRIV"
before=$(priv_blob_bytes "$big_layer")
out=$(cri run "$pos" sh -c 'sha256sum /data/mid.bin | cut -c1-64') || fail "pod on $pos failed: [$out]"
[[ $out == "$(sha256sum "$ENV_TMP/pos-l2/data/mid.bin" | cut -c1-64)" ]] || fail "pod on $pos read mid.bin as [$out]"
after=$(priv_blob_bytes "$big_layer")
echo "  big layer: ${after:-0} of $big_size bytes fetched (${before:-0} before the pod)"
((${after:-0} > ${before:-0})) || fail "reading mid.bin fetched nothing from the private registry"
((after * 5 < big_size)) || fail "fetched $after of $big_size bytes (want < 20%)"
# Every range request the registry answered for the big layer was
# authenticated: the registry names the user of each request it served.
n_auth=$(grep "blobs/$big_layer" "$ENV_TMP/registry-priv.log" | grep -c "auth.user.name=\"\?$USER_NAME" || true)
((n_auth > 0)) || fail "no authenticated request for the big layer in the registry log"
echo "  $n_auth authenticated requests for the big layer"

echo "== the other ImageService calls pass through the proxy"
"$ACCEL_BIN_DIR/cri_client" --address "unix://$PROXY_SOCK" pull "$REGISTRY/e2e/pause:1" > /dev/null ||
  fail "anonymous pull through the proxy"

echo "== the password is nowhere in accel's log or root"
for s in "$PASS" "$B64"; do
  ! grep -a -q -F -- "$s" "$ENV_TMP/accel.log" || fail "a secret is in accel's log"
  # -xdev: not into the FUSE mounts (layer contents), which hold no state.
  if find "$ENV_TMP/accel" -xdev -type f -print0 | xargs -0 -r grep -a -l -F -- "$s" > "$ENV_TMP/leaks"; then
    fail "a secret is in $(cat "$ENV_TMP/leaks")"
  fi
done
[[ $(find "$ENV_TMP/accel" -xdev -type f | wc -l) -gt 0 ]] || fail "accel's root holds no files: wrong path?"

echo "== no sandbox or container left behind"
[[ -z $(ctrk containers ls -q) ]] || fail "CRI containers left: $(ctrk containers ls -q | tr '\n' ' ')"
echo "PASS test_cri_auth"
