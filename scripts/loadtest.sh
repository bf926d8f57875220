#!/usr/bin/env bash
# The benchmark: token-issuer under a join storm, webhook-ingest under a webhook flood and the
# notifier's event stream under an SSE fan-out, on this machine, in release builds, against a
# fresh database. Results go to
# bench/results/<UTC timestamp>-{join-storm,webhook-flood,sse-fanout}.json (commit them to
# compare runs; see bench/README.md).
#
#   scripts/loadtest.sh                                  # 20000 viewers, 20000 events, 64 connections, 10000 SSE clients
#   VIEWERS=5000 EVENTS=5000 CONNECTIONS=32 SSE_CLIENTS=2000 scripts/loadtest.sh
#   SCENARIOS=sse-fanout scripts/loadtest.sh             # only some of the scenarios
#
# Both services run with limits raised out of the way (the storm measures the path, not the
# rate limiter), RUST_LOG=warn, and their own NATS namespace (`bench`), on ports 18081, 18085
# and 18086 so a local stack on the default ports is left alone. The SSE clients and the
# notifier are separate processes, each under its own `ulimit -n`: SSE_CLIENTS must stay
# well below it. Their logs are in
# target/loadtest/. The services are stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${VIEWERS:-20000}
EVENTS=${EVENTS:-20000}
CONNECTIONS=${CONNECTIONS:-64}
SSE_CLIENTS=${SSE_CLIENTS:-10000}
SSE_EVENTS=${SSE_EVENTS:-20}
SCENARIOS=${SCENARIOS:-"join-storm webhook-flood sse-fanout call-storm chat-storm"}
CHAT_PARTICIPANTS=${CHAT_PARTICIPANTS:-500}
CHAT_MESSAGES=${CHAT_MESSAGES:-60}
PAIRS=${PAIRS:-3000}
CALL_CONCURRENCY=${CALL_CONCURRENCY:-64}
TOKEN_PORT=18081
WEBHOOK_PORT=18085
NOTIFIER_PORT=18086
CALLS_PORT=18083
SESSIONS_PORT=18082
SIM_PORT=17880
DB=ipelya_bench

bin=${CARGO_TARGET_DIR:-target}/release
logs=${CARGO_TARGET_DIR:-target}/loadtest
results=bench/results

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export NATS_NAMESPACE=bench
export AUTH_JWT_SECRET=loadtest-client-jwt-secret-not-for-production
export LIVEKIT_API_KEY=APIloadtest
export LIVEKIT_API_SECRET=loadtest-livekit-secret-not-for-production
export RATE_LIMIT_USER_PER_MIN=10000000
export RATE_LIMIT_IP_PER_MIN=10000000
export DB_POOL_SIZE=${DB_POOL_SIZE:-16}
export RUST_LOG=${RUST_LOG:-warn}
unset OTEL_EXPORTER_OTLP_ENDPOINT

echo "== build (release)"
cargo build --release -p token-issuer -p webhook-ingest -p notifier -p call-signaling -p session-manager -p livekit-sim -p loadgen

scripts/services-up.sh

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$TOKEN_PORT" "$WEBHOOK_PORT" "$NOTIFIER_PORT" "$CALLS_PORT" "$SESSIONS_PORT" "$SIM_PORT"; do
  if port_taken "$port"; then
    echo "port $port is already in use (an earlier loadtest still running?)" >&2
    exit 1
  fi
done

echo "== fresh database $DB"
psql -q -h 127.0.0.1 -U postgres -d postgres \
  -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"

pids=()
stop_services() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_services EXIT
trap 'exit 130' INT TERM

mkdir -p "$logs"
HTTP_PORT=$TOKEN_PORT "$bin/token-issuer" >"$logs/token-issuer.log" 2>&1 &
token_pid=$!
pids+=("$token_pid")
HTTP_PORT=$WEBHOOK_PORT "$bin/webhook-ingest" >"$logs/webhook-ingest.log" 2>&1 &
webhook_pid=$!
pids+=("$webhook_pid")
HTTP_PORT=$NOTIFIER_PORT "$bin/notifier" >"$logs/notifier.log" 2>&1 &
notifier_pid=$!
pids+=("$notifier_pid")
# livekit-sim for call-signaling's CreateRoom/DeleteRoom (no webhooks: nobody joins the calls)
HTTP_PORT=$SIM_PORT SIM_BIND_ADDRESS=127.0.0.1 LIVEKIT_WEBHOOK_URLS= "$bin/livekit-sim" >"$logs/livekit-sim.log" 2>&1 &
sim_pid=$!
pids+=("$sim_pid")
HTTP_PORT=$CALLS_PORT LIVEKIT_URL="http://127.0.0.1:$SIM_PORT" "$bin/call-signaling" >"$logs/call-signaling.log" 2>&1 &
calls_pid=$!
pids+=("$calls_pid")
# session-manager for the chat storm (CHAT_RATE_PER_MIN stays at its 20: the storm shows the
# limiter); no reconciliation during the run: the seeded session has no room in the sim.
HTTP_PORT=$SESSIONS_PORT LIVEKIT_URL="http://127.0.0.1:$SIM_PORT" RECONCILE_INTERVAL_SECONDS=3600 \
  "$bin/session-manager" >"$logs/session-manager.log" 2>&1 &
sessions_pid=$!
pids+=("$sessions_pid")

wait_healthy() { # name port pid
  for _ in $(seq 1 120); do
    curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$2/health" 2>/dev/null && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      echo "$1 exited during start-up:" >&2
      tail -n 20 "$logs/$1.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$1 did not become healthy within 60 s:" >&2
  tail -n 20 "$logs/$1.log" >&2
  exit 1
}
wait_healthy token-issuer "$TOKEN_PORT" "$token_pid"
wait_healthy webhook-ingest "$WEBHOOK_PORT" "$webhook_pid"
wait_healthy notifier "$NOTIFIER_PORT" "$notifier_pid"
wait_healthy call-signaling "$CALLS_PORT" "$calls_pid"
wait_healthy session-manager "$SESSIONS_PORT" "$sessions_pid"
echo "token-issuer (pid $token_pid) on :$TOKEN_PORT, webhook-ingest (pid $webhook_pid) on :$WEBHOOK_PORT and notifier (pid $notifier_pid) on :$NOTIFIER_PORT are healthy"

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
outputs=()
summaries=()

if wants join-storm; then
  out="$results/$stamp-join-storm.json"
  echo "== join storm: $VIEWERS viewers, $CONNECTIONS connections"
  line=$("$bin/loadgen" join-storm --url "http://127.0.0.1:$TOKEN_PORT" \
    --database-url "$DATABASE_URL" --viewers "$VIEWERS" --connections "$CONNECTIONS" \
    --cpu-watch "token-issuer=$token_pid" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server \
    --out "$out")
  echo "$line"
  outputs+=("$out")
  summaries+=("$line")
fi

if wants webhook-flood; then
  out="$results/$stamp-webhook-flood.json"
  echo "== webhook flood: $EVENTS events, $CONNECTIONS connections"
  line=$("$bin/loadgen" webhook-flood --url "http://127.0.0.1:$WEBHOOK_PORT" \
    --events "$EVENTS" --connections "$CONNECTIONS" \
    --cpu-watch "webhook-ingest=$webhook_pid" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server \
    --out "$out")
  echo "$line"
  outputs+=("$out")
  summaries+=("$line")
fi

if wants sse-fanout; then
  out="$results/$stamp-sse-fanout.json"
  echo "== SSE fan-out: $SSE_CLIENTS clients, $SSE_EVENTS events"
  line=$("$bin/loadgen" sse-fanout --addr "127.0.0.1:$NOTIFIER_PORT" \
    --database-url "$DATABASE_URL" --clients "$SSE_CLIENTS" --events "$SSE_EVENTS" \
    --cpu-watch "notifier=$notifier_pid" --cpu-watch nats-server --cpu-watch "postgres:$DB" \
    --out "$out")
  echo "$line"
  outputs+=("$out")
  summaries+=("$line")
fi

if wants call-storm; then
  out="$results/$stamp-call-storm.json"
  echo "== call storm: $PAIRS pairs, $CALL_CONCURRENCY set-ups in flight"
  line=$("$bin/loadgen" call-storm --url "http://127.0.0.1:$CALLS_PORT" \
    --events-url "http://127.0.0.1:$NOTIFIER_PORT" \
    --database-url "$DATABASE_URL" --pairs "$PAIRS" --concurrency "$CALL_CONCURRENCY" \
    --cpu-watch "call-signaling=$calls_pid" --cpu-watch "notifier=$notifier_pid" --cpu-watch "livekit-sim=$sim_pid" \
    --cpu-watch postgres --cpu-watch nats-server \
    --out "$out")
  echo "$line"
  outputs+=("$out")
  summaries+=("$line")
fi

if wants chat-storm; then
  out="$results/$stamp-chat-storm.json"
  echo "== chat storm: $CHAT_PARTICIPANTS participants × $CHAT_MESSAGES messages, $CONNECTIONS connections"
  line=$("$bin/loadgen" chat-storm --url "http://127.0.0.1:$SESSIONS_PORT" \
    --database-url "$DATABASE_URL" --participants "$CHAT_PARTICIPANTS" --messages "$CHAT_MESSAGES" \
    --connections "$CONNECTIONS" \
    --cpu-watch "session-manager=$sessions_pid" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server \
    --out "$out")
  echo "$line"
  outputs+=("$out")
  summaries+=("$line")
fi

echo
echo "== summary ($(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'), $(nproc) cores)"
printf '%s\n' "${summaries[@]}"
echo "results: ${outputs[*]}"
for name in token-issuer webhook-ingest notifier call-signaling session-manager livekit-sim; do
  lines=$(wc -l <"$logs/$name.log")
  [ "$lines" -eq 0 ] || echo "$name logged $lines lines at warn or above: $logs/$name.log"
done
