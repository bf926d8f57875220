#!/usr/bin/env bash
# The whole stack on this machine: PostgreSQL and NATS checked (and started when they are
# installed but down), the database created, livekit-sim and every service built and
# started, the nginx gateway in front of them on :8080 (deploy/gateway/), demo users
# seeded, a walk-through run once through the gateway as a smoke check and printed.
# Ctrl-C stops everything. PROFILE=release for optimised binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
DB_NAME="${DB_NAME:-ipelya}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/$DB_NAME}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-local-dev-jwt-secret-change-me-0123456789}"
export LIVEKIT_API_KEY="${LIVEKIT_API_KEY:-devkey}"
export LIVEKIT_API_SECRET="${LIVEKIT_API_SECRET:-local-dev-livekit-secret-0123456789abcdef}"
export LIVEKIT_URL="${LIVEKIT_URL:-http://127.0.0.1:7880}"
export RUST_LOG="${RUST_LOG:-info}"
RUN=.run
mkdir -p "$RUN/logs"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
GW="http://127.0.0.1:$GATEWAY_PORT"
NGINX="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
if [ ! -x "$NGINX" ]; then
  echo "nginx is not installed; the gateway needs Debian's package: apt-get install nginx" >&2
  exit 1
fi

scripts/services-up.sh
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
  echo "creating database $DB_NAME"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE \"$DB_NAME\""
fi

echo "building ($PROFILE)…"
flag=""; [ "$PROFILE" = "release" ] && flag="--release"
cargo build $flag -p livekit-sim -p webhook-ingest -p token-issuer -p session-manager -p call-signaling -p moderation -p notifier
BIN="target/$PROFILE"

pids=()
cleanup() {
  trap - EXIT INT TERM # once, whichever signal or exit came first
  echo; echo "stopping the stack"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start() { # name port [health path]
  local name=$1 port=$2
  HTTP_PORT=$port "$BIN/$name" >"$RUN/logs/$name.log" 2>&1 &
  pids+=($!)
  wait_up "$name" "$port" "${3-health}"
}

wait_up() { # name port path: the last started process answers on it
  local name=$1 port=$2
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/${3-health}" >/dev/null 2>&1; then echo "  $name on :$port"; return; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "$name exited; see $RUN/logs/$name.log" >&2; tail -20 "$RUN/logs/$name.log" >&2; exit 1; fi
    sleep 0.2
  done
  echo "$name did not answer on :$port; see $RUN/logs/$name.log" >&2; exit 1
}

echo "starting (logs in $RUN/logs)…"
# LiveKit's webhooks go through the gateway, as in production.
LIVEKIT_WEBHOOK_URLS=$GW/webhooks/livekit SIM_BIND_ADDRESS=127.0.0.1 start livekit-sim 7880 ""
start webhook-ingest 8085
start token-issuer 8081
start session-manager 8082
start call-signaling 8083
start moderation 8084
start notifier 8086   # log mode: no APNS_*/FCM_* set, pushes are only logged
# The gateway: the template rendered with the ports above into $RUN/gateway, nginx run from
# there (its pid, logs and temp files inside); /ops and /v1/ops from loopback only.
GATEWAY_PORT=127.0.0.1:$GATEWAY_PORT deploy/gateway/render.sh "$RUN/gateway"
"$NGINX" -p "$PWD/$RUN/gateway/" -c "$PWD/$RUN/gateway/nginx.conf" -g 'daemon off;' >"$RUN/logs/gateway.log" 2>&1 &
pids+=($!)
wait_up gateway "$GATEWAY_PORT" health

# Demo users: a creator and three viewers, with coins.
CREATOR=00000000-0000-4000-8000-00000000c0de
VIEWERS=(00000000-0000-4000-8000-000000000001 00000000-0000-4000-8000-000000000002 00000000-0000-4000-8000-000000000003)
OPERATOR=00000000-0000-4000-8000-0000000000a0
psql -q -h 127.0.0.1 -U postgres -d "$DB_NAME" <<SQL
INSERT INTO profiles (id, username, is_creator) VALUES ('$CREATOR', 'demo_creator', true) ON CONFLICT DO NOTHING;
INSERT INTO profiles (id, username) VALUES ('${VIEWERS[0]}', 'demo_viewer1'), ('${VIEWERS[1]}', 'demo_viewer2'), ('${VIEWERS[2]}', 'demo_viewer3') ON CONFLICT DO NOTHING;
INSERT INTO profiles (id, username, role) VALUES ('$OPERATOR', 'demo_ops', 'ops') ON CONFLICT DO NOTHING;
INSERT INTO coin_wallets (user_id, balance) VALUES ('${VIEWERS[0]}', 1000), ('${VIEWERS[1]}', 1000), ('${VIEWERS[2]}', 1000) ON CONFLICT DO NOTHING;
UPDATE live_sessions SET status = 'ended', ended_at = now(), end_reason = 'admin_terminated' WHERE creator_id = '$CREATOR' AND status <> 'ended';
SQL

jwt() { # user id → a client access token (HS256, aud=authenticated), as the app's auth issues
  python3 - "$AUTH_JWT_SECRET" "$1" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, sub = sys.argv[1].encode(), sys.argv[2]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": sub, "aud": "authenticated", "exp": int(time.time()) + 86400}).encode())
s = b64(hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
}
CREATOR_JWT=$(jwt $CREATOR)
VIEWER_JWT=$(jwt "${VIEWERS[0]}")

echo; echo "== smoke walk-through"
session=$(curl -fs -X POST $GW/v1/sessions -H "authorization: Bearer $CREATOR_JWT" -H 'content-type: application/json' \
  -d '{"sessionType":"video_live","title":"Demo broadcast","accessType":"public"}')
SESSION_ID=$(echo "$session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"]["id"])')
host_token=$(curl -fs -X POST $GW/v1/tokens -H "authorization: Bearer $CREATOR_JWT" -H 'content-type: application/json' -d "{\"sessionId\":\"$SESSION_ID\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -fs -X POST http://127.0.0.1:7880/sim/join -H 'content-type: application/json' -d "{\"token\":\"$host_token\"}" >/dev/null
viewer_token=$(curl -fs -X POST $GW/v1/tokens -H "authorization: Bearer $VIEWER_JWT" -H 'content-type: application/json' -d "{\"sessionId\":\"$SESSION_ID\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -fs -X POST http://127.0.0.1:7880/sim/join -H 'content-type: application/json' -d "{\"token\":\"$viewer_token\"}" >/dev/null
for _ in $(seq 1 50); do
  state=$(curl -fs $GW/v1/sessions/$SESSION_ID -H "authorization: Bearer $VIEWER_JWT")
  echo "$state" | grep -q '"viewerCount":1' && echo "$state" | grep -q '"status":"live"' && break
  sleep 0.2
done
echo "session $SESSION_ID: $(echo "$state" | python3 -c 'import json,sys; s=json.load(sys.stdin)["session"]; print(s["status"], "viewers:", s["viewerCount"])')"

# A private call: viewer 2 has a phone (log mode: the push is logged and counts as
# delivered), viewer 1 calls, the call rings, viewer 2 answers, both are in the room.
CALLEE_JWT=$(jwt "${VIEWERS[1]}")
OPS_JWT=$(jwt "$OPERATOR")
curl -fs -X PUT $GW/v1/devices -H "authorization: Bearer $CALLEE_JWT" -H 'content-type: application/json' \
  -d '{"platform":"ios","kind":"voip","token":"00demo0000000000000000000000000000000000000000000000000000000001"}' >/dev/null
CALL_ID=$(curl -fs -X POST $GW/v1/calls -H "authorization: Bearer $VIEWER_JWT" -H 'content-type: application/json' \
  -d "{\"calleeId\":\"${VIEWERS[1]}\",\"callType\":\"video_call\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["call"]["id"])')
for _ in $(seq 1 50); do
  curl -fs $GW/v1/calls/$CALL_ID -H "authorization: Bearer $CALLEE_JWT" | grep -q '"status":"ringing"' && break
  sleep 0.1
done
curl -fs -X POST $GW/v1/calls/$CALL_ID/accept -H "authorization: Bearer $CALLEE_JWT" >/dev/null
for who in "$VIEWER_JWT" "$CALLEE_JWT"; do
  t=$(curl -fs -X POST $GW/v1/tokens -H "authorization: Bearer $who" -H 'content-type: application/json' -d "{\"callId\":\"$CALL_ID\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -fs -X POST http://127.0.0.1:7880/sim/join -H 'content-type: application/json' -d "{\"token\":\"$t\"}" >/dev/null
done
for _ in $(seq 1 50); do
  call=$(curl -fs $GW/v1/calls/$CALL_ID -H "authorization: Bearer $VIEWER_JWT")
  echo "$call" | grep -q '"status":"live"' && break
  sleep 0.1
done
echo "call $CALL_ID: $(echo "$call" | python3 -c 'import json,sys; print(json.load(sys.stdin)["call"]["status"])')"
curl -fs -X POST $GW/v1/calls/$CALL_ID/end -H "authorization: Bearer $VIEWER_JWT" >/dev/null

cat <<TXT

The stack is up, behind the gateway at $GW (nginx, deploy/gateway/):
  gateway :$GATEWAY_PORT  token-issuer :8081  session-manager :8082  call-signaling :8083  moderation :8084
  webhook-ingest :8085  notifier :8086  livekit-sim :7880 (its webhooks go through the gateway)
Logs: $RUN/logs/*.log (the gateway's access log, JSON lines: $RUN/logs/gateway.log)
Metrics and health on each service's own port (the gateway routes only API.md's paths):
  curl localhost:8082/metrics   curl localhost:8082/health   curl $GW/health (the gateway itself)

Try it through the gateway (tokens valid 24 h):
  export GW=$GW
  export CREATOR=$CREATOR_JWT
  export VIEWER=$VIEWER_JWT
  # a creator goes live (end the demo session first: POST /v1/sessions/$SESSION_ID/end)
  curl -s -X POST \$GW/v1/sessions/$SESSION_ID/end -H "authorization: Bearer \$CREATOR"
  curl -s -X POST \$GW/v1/sessions -H "authorization: Bearer \$CREATOR" -H 'content-type: application/json' \\
       -d '{"sessionType":"video_live","title":"My show","accessType":"public"}'
  # a viewer asks for a LiveKit token, then "joins" through the simulator (apps talk to LiveKit directly)
  curl -s -X POST \$GW/v1/tokens -H "authorization: Bearer \$VIEWER" -H 'content-type: application/json' -d '{"sessionId":"<id>"}'
  curl -s -X POST localhost:7880/sim/join -H 'content-type: application/json' -d '{"token":"<token>"}'
  # watch it follow LiveKit; -i shows the X-Request-Id the gateway passed on (send your own to keep it)
  curl -si \$GW/v1/sessions/<id> -H "authorization: Bearer \$VIEWER" -H 'x-request-id: my-request-1'
  curl -s localhost:7880/sim/rooms
  # the host drops: host_disconnected, then ended after HOST_GRACE_SECONDS (30)
  curl -s -X POST localhost:7880/sim/drop -H 'content-type: application/json' -d '{"room":"live_video_<id>","identity":"$CREATOR"}'
  # a call: the callee's event stream, then a call to it
  export CALLEE=$CALLEE_JWT
  curl -N \$GW/v1/events -H "authorization: Bearer \$CALLEE" &
  curl -s -X POST \$GW/v1/calls -H "authorization: Bearer \$VIEWER" -H 'content-type: application/json' -d '{"calleeId":"${VIEWERS[1]}","callType":"audio_call"}'
  # operators: the dashboard at $GW/ops (log in with this token), the ops API (loopback only, OPS_ALLOW_CIDR)
  export OPS=$OPS_JWT
  curl -s \$GW/v1/ops/sessions -H "authorization: Bearer \$OPS"
  # the gateway's own answers: 404 envelope, 413 over 64 KiB, 429 past 50 requests/s per address
  curl -s \$GW/v1/nothing

Ctrl-C stops the stack.
TXT
wait
