#!/usr/bin/env bash
# A TLS registry with a self-signed certificate made here: works with `ca` in
# hosts.toml (or --insecure), fails with a clear message without either.
source "$(dirname "$0")/lib_registry.sh"
reg_init tls

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RT/reg.key" -out "$RT/reg.crt" -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 || fail "openssl"
REG_TLS_CERT=$RT/reg.crt REG_TLS_KEY=$RT/reg.key reg_start tls
make_image "$RT/img" v1 --platforms linux/amd64,linux/arm64
push_layout "$RT/img:v1" "$REG_tls/secure/app:v1" --all

expect_fail err "$ACCELCTL" inspect "$REG_tls/secure/app:v1"
[[ $err == *"TLS verification failed"* && $err == *"$REG_tls"* ]] || fail "no-CA message: $err"
[[ $(echo "$err" | grep -c .) -eq 1 ]] || fail "not one line: $err"
echo "ok: without the CA: $err"

mkdir -p "$RT/certs.d/$REG_tls"
cp "$RT/reg.crt" "$RT/certs.d/$REG_tls/ca.crt"
cat >"$RT/certs.d/$REG_tls/hosts.toml" <<TOML
server = "https://$REG_tls"
ca = "ca.crt"
TOML
"$ACCELCTL" inspect --hosts-dir "$RT/certs.d" "$REG_tls/secure/app:v1" >/dev/null ||
  fail "inspect with ca in hosts.toml"
"$ACCELCTL" copy --hosts-dir "$RT/certs.d" "$REG_tls/secure/app:v1" "$REG_tls/secure/copy:v1" \
  >"$RT/copy.out" 2>&1 || fail "copy over TLS: $(cat "$RT/copy.out")"
echo "ok: with ca in hosts.toml (inspect, copy)"

"$ACCELCTL" inspect --insecure "$REG_tls/secure/app:v1" >/dev/null || fail "--insecure"
echo "ok: --insecure"
echo PASS
