#!/usr/bin/env bash
# Retry and resume through a fault-injecting proxy (fault_proxy.py) in front
# of a registry: connections cut mid-body are resumed from the byte reached
# (Range), 503 and 429 + Retry-After are retried, a stalled transfer is
# abandoned after --stall-timeout and resumed, a registry that keeps failing
# ends in one clear error line.
source "$(dirname "$0")/lib_registry.sh"
reg_init faults

reg_start up
reg_start dst
make_image "$RT/img" v1 --layers 1 --layer-size 1200000
push_layout "$RT/img:v1" "$REG_up/test/big:v1"
layer=$("$ACCELCTL" inspect --plain-http "$REG_up/test/big:v1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')

# start_proxy PLAN: a fresh proxy with PLAN; sets $PROXY and $PLOG.
n_proxy=0
start_proxy() {
  n_proxy=$((n_proxy + 1))
  local port; port=$(free_port)
  PLOG=$RT/proxy-$n_proxy.jsonl
  : >"$PLOG"
  bg_start "proxy-$n_proxy" python3 "$REG_LIB_DIR/fault_proxy.py" --port "$port" \
    --upstream "$REG_up" --plan "$1" --log "$PLOG" --lifetime 120
  PROXY_PID=$BG_PID
  PROXY=127.0.0.1:$port
  wait_http "http://$PROXY/v2/"
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }

# 1. Connection cut twice in the layer: resumed with Range from the byte reached.
start_proxy "drop:300000,drop:500000"
"$ACCELCTL" copy --plain-http --debug "$PROXY/test/big:v1" "$REG_dst/a/big:v1" >"$RT/c1.log" 2>&1 ||
  fail "copy with dropped connections: $(tail -3 "$RT/c1.log")"
grep -q '"range": "bytes=300000-"' "$PLOG" || fail "no resume from 300000: $(cat "$PLOG")"
grep -q '"range": "bytes=800000-"' "$PLOG" || fail "no resume from 800000: $(cat "$PLOG")"
n=$(grep -c "blobs/$layer" "$PLOG")
[[ $n -eq 3 ]] || fail "want 3 requests for the layer, got $n"
"$ACCELCTL" inspect --plain-http "$REG_dst/a/big:v1" >/dev/null || fail "copied image"
stop_proxy
echo "ok: dropped connections resumed at bytes 300000 and 800000"

# 2. 503, 503, then 429 with Retry-After: 2 -> retried, and the wait honoured.
start_proxy "503,503,429:2"
t0=$(date +%s.%N)
"$ACCELCTL" inspect --plain-http "$PROXY/test/big:v1" >/dev/null 2>"$RT/c2.log" ||
  fail "inspect with 503/429: $(cat "$RT/c2.log")"
t1=$(date +%s.%N)
python3 -c "import sys; sys.exit(0 if $t1 - $t0 >= 2.0 else 1)" ||
  fail "Retry-After: 2 not honoured (took $(python3 -c "print($t1 - $t0)")s)"
[[ $(grep -c '"fault": "503"' "$PLOG") -eq 2 && $(grep -c '"fault": "429:2"' "$PLOG") -eq 1 ]] ||
  fail "faults not all served: $(cat "$PLOG")"
stop_proxy
echo "ok: 503 and 429 retried, Retry-After honoured"

# 3. A stall mid-body: abandoned after --stall-timeout 2 (not the 30 s the proxy
#    would hang), then resumed.
start_proxy "stall:400000:30"
t0=$(date +%s)
"$ACCELCTL" copy --plain-http --stall-timeout 2 "$PROXY/test/big:v1" "$REG_dst/b/big:v1" \
  >"$RT/c3.log" 2>&1 || fail "copy with a stall: $(tail -3 "$RT/c3.log")"
t1=$(date +%s)
(( t1 - t0 < 20 )) || fail "stall not detected in time ($((t1 - t0)) s)"
grep -q '"range": "bytes=400000-"' "$PLOG" || fail "no resume after stall: $(cat "$PLOG")"
stop_proxy
echo "ok: stalled transfer abandoned after $((t1 - t0)) s and resumed"

# 4. A registry that keeps answering 503: gives up with one line naming it.
start_proxy "503,503,503,503,503,503,503,503,503,503"
expect_fail err "$ACCELCTL" inspect --plain-http "$PROXY/test/big:v1"
[[ $err == *"HTTP 503"* && $err == *"$PROXY"* ]] || fail "persistent 503: $err"
[[ $(echo "$err" | grep -c .) -eq 1 ]] || fail "not one line: $err"
stop_proxy
echo "ok: persistent 503: $err"
echo PASS
