#!/usr/bin/env bash
# Registry auth end to end: htpasswd basic auth (credentials from docker's
# config.json and from the daemon config's [registry.auths]), bearer tokens
# from a token server of our own, and no secret in any error message.
source "$(dirname "$0")/lib_registry.sh"
reg_init auth

make_image "$RT/img" v1 --layer-size 3000

# --- Basic auth (htpasswd) ---
htpasswd -Bbn alice 's3cret-pw' >"$RT/htpasswd" 2>/dev/null
reg_start basic "auth:" "  htpasswd:" "    realm: accel-basic" "    path: $RT/htpasswd"
push_layout "$RT/img:v1" "$REG_basic/team/app:v1" --dest-creds 'alice:s3cret-pw'

expect_fail err "$ACCELCTL" inspect --plain-http "$REG_basic/team/app:v1"
[[ $err == *"requires authentication"* && $err == *"$REG_basic"* ]] || fail "no creds: $err"
echo "ok: basic auth without credentials: $err"

# docker config.json (base64 "auth").
printf '{"auths":{"%s":{"auth":"%s"}}}' "$REG_basic" "$(printf 'alice:s3cret-pw' | base64 -w0)" \
  >"$DOCKER_CONFIG/config.json"
"$ACCELCTL" inspect --plain-http "$REG_basic/team/app:v1" >/dev/null || fail "basic via config.json"
echo "ok: basic auth with docker config.json"

# Wrong password in config.json, right one in the daemon config: the daemon config wins.
printf '{"auths":{"%s":{"username":"alice","password":"wrong-pw"}}}' "$REG_basic" \
  >"$DOCKER_CONFIG/config.json"
expect_fail err "$ACCELCTL" inspect --plain-http "$REG_basic/team/app:v1"
[[ $err == *"refused the credentials"* ]] || fail "wrong password: $err"
[[ $err != *wrong-pw* && $err != *s3cret* ]] || fail "secret in error: $err"
cat >"$RT/daemon.toml" <<TOML
root = "/var/lib/accel"
[registry.auths."$REG_basic"]
username = "alice"
password = "s3cret-pw"
TOML
"$ACCELCTL" inspect --plain-http --config "$RT/daemon.toml" "$REG_basic/team/app:v1" >/dev/null ||
  fail "basic via daemon config"
echo "ok: basic auth with the daemon config ([registry.auths])"
rm -f "$DOCKER_CONFIG/config.json"

# --- Bearer tokens ---
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RT/tok.key" -out "$RT/tok.crt" -days 1 \
  -subj "/CN=accel-token" >/dev/null 2>&1 || fail "openssl"
tport=$(free_port)
bg_start token python3 "$REG_LIB_DIR/token_server.py" --port "$tport" --key "$RT/tok.key" \
  --cert "$RT/tok.crt" --user bob --password 't0ken-pw' --service accel-test \
  --issuer accel-issuer --log "$RT/token-requests.jsonl"
wait_http "http://127.0.0.1:$tport/"
reg_start token "auth:" "  token:" "    realm: http://127.0.0.1:$tport/token" \
  "    service: accel-test" "    issuer: accel-issuer" "    rootcertbundle: $RT/tok.crt"
push_layout "$RT/img:v1" "$REG_token/team/app:v1" --dest-creds 'bob:t0ken-pw'

expect_fail err "$ACCELCTL" inspect --plain-http "$REG_token/team/app:v1"
[[ $err == *"token server"* && $err != *t0ken-pw* ]] || fail "token without creds: $err"
cat >"$RT/daemon2.toml" <<TOML
[registry.auths."$REG_token"]
auth = "$(printf 'bob:t0ken-pw' | base64 -w0)"
[registry.auths."$REG_basic"]
username = "alice"
password = "s3cret-pw"
TOML
: >"$RT/token-requests.jsonl"
"$ACCELCTL" inspect --plain-http --config "$RT/daemon2.toml" "$REG_token/team/app:v1" >/dev/null ||
  fail "token inspect"
n=$(grep -c '"authorized": true' "$RT/token-requests.jsonl")
[[ $n -eq 1 ]] || fail "want 1 token for one scope, got $n"
echo "ok: bearer token auth (one token fetched for two requests)"

# Copy basic -> token registry: pull with basic, push with a push-scoped token.
: >"$RT/token-requests.jsonl"
"$ACCELCTL" copy --plain-http --config "$RT/daemon2.toml" "$REG_basic/team/app:v1" \
  "$REG_token/copy/app:v2" >"$RT/copy.out" 2>&1 || fail "copy basic->token: $(cat "$RT/copy.out")"
grep -q 'repository:copy/app:pull,push' "$RT/token-requests.jsonl" || fail "no push scope asked"
n=$(grep -c '"authorized": true' "$RT/token-requests.jsonl")
[[ $n -le 3 ]] || fail "tokens not cached: $n fetched"
"$ACCELCTL" inspect --plain-http --config "$RT/daemon2.toml" "$REG_token/copy/app:v2" >/dev/null ||
  fail "inspect copied image"
echo "ok: copy from a basic-auth registry to a token-auth registry ($n token fetches)"
echo PASS
