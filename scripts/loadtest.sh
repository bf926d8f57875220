#!/usr/bin/env bash
# The benchmark: the load generator's five scenarios on this machine, in release builds, each
# against only the services it needs, started on a fresh database and their own NATS
# namespace:
#
#   join-storm     token-issuer                            POST /v1/tokens
#   webhook-flood  webhook-ingest                          POST /webhooks/livekit
#   sse-fanout     notifier                                GET /v1/events, events from JetStream
#   call-storm     call-signaling, notifier, livekit-sim   initiate → ringing → accept
#   chat-storm     session-manager, livekit-sim            POST /v1/sessions/{id}/messages
#
# Results go to bench/results/<STAMP>-<scenario>.json (commit them to compare runs; see
# bench/README.md; `scripts/bench-report.sh` runs this and writes the Markdown report).
#
#   scripts/loadtest.sh                       # full size: 20000 viewers, 20000 events, 64 connections,
#                                             # 10000 SSE clients, 3000 call pairs, 500 × 60 chat posts
#   QUICK=1 scripts/loadtest.sh               # small sizes: a smoke check of a minute or two
#   VIEWERS=5000 EVENTS=5000 CONNECTIONS=32 SSE_CLIENTS=2000 scripts/loadtest.sh
#   SCENARIOS="sse-fanout chat-storm" scripts/loadtest.sh   # only some of the scenarios
#
# Every size has a variable (below); QUICK only changes the defaults. The services run with
# the token limits raised out of the way (the storm measures the path, not the rate
# limiter), RUST_LOG=warn, on ports PORT_BASE+1..+7 (18081-18087, or the first free one of
# 28080 and 38080 when something holds one of those) so a local stack is left alone. The SSE clients and the notifier are separate processes, each under
# its own `ulimit -n`: SSE_CLIENTS must stay well below it. Logs: target/loadtest/<scenario>/.
# Only the machine's PostgreSQL and NATS are used (scripts/services-up.sh starts them when
# they are installed but down). A scenario that fails is reported and the others still run;
# the exit status is then 1. Services are stopped on exit, whatever happens.
#
# `scripts/loadtest.sh --build` only builds. `scripts/loadtest.sh --scenario NAME` runs one
# scenario after the checks of a full run (the script calls itself that way so that each
# scenario's clean-up is its own).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
  : "${VIEWERS:=5000}" "${EVENTS:=5000}" "${SSE_CLIENTS:=2000}" "${SSE_EVENTS:=10}"
  : "${PAIRS:=500}" "${CHAT_PARTICIPANTS:=100}" "${CHAT_MESSAGES:=30}"
fi
VIEWERS=${VIEWERS:-20000}
EVENTS=${EVENTS:-20000}
CONNECTIONS=${CONNECTIONS:-64}
SSE_CLIENTS=${SSE_CLIENTS:-10000}
SSE_EVENTS=${SSE_EVENTS:-20}
PAIRS=${PAIRS:-3000}
CALL_CONCURRENCY=${CALL_CONCURRENCY:-64}
CHAT_PARTICIPANTS=${CHAT_PARTICIPANTS:-500}
CHAT_MESSAGES=${CHAT_MESSAGES:-60}
ALL_SCENARIOS="join-storm webhook-flood sse-fanout call-storm chat-storm"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
DB=ipelya_bench

bin=${CARGO_TARGET_DIR:-target}/release
logs=${CARGO_TARGET_DIR:-target}/loadtest
results=bench/results

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export AUTH_JWT_SECRET=loadtest-client-jwt-secret-not-for-production
export LIVEKIT_API_KEY=APIloadtest
export LIVEKIT_API_SECRET=loadtest-livekit-secret-not-for-production
export RATE_LIMIT_USER_PER_MIN=10000000
export RATE_LIMIT_IP_PER_MIN=10000000
export DB_POOL_SIZE=${DB_POOL_SIZE:-16}
export RUST_LOG=${RUST_LOG:-warn}
unset OTEL_EXPORTER_OTLP_ENDPOINT

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The services' ports: PORT_BASE + 1 token-issuer, 2 session-manager, 3 call-signaling,
# 5 webhook-ingest, 6 notifier, 7 livekit-sim.
set_ports() {
  TOKEN_PORT=$(($1 + 1)) SESSIONS_PORT=$(($1 + 2)) CALLS_PORT=$(($1 + 3))
  WEBHOOK_PORT=$(($1 + 5)) NOTIFIER_PORT=$(($1 + 6)) SIM_PORT=$(($1 + 7))
}
ports_free() {
  set_ports "$1"
  for port in "$TOKEN_PORT" "$SESSIONS_PORT" "$CALLS_PORT" "$WEBHOOK_PORT" "$NOTIFIER_PORT" "$SIM_PORT"; do
    if port_taken "$port"; then
      echo "port $port is already in use" >&2
      return 1
    fi
  done
}

# One scenario: fresh database, its services, the load generator, services stopped.
run_one() {
  local scenario=$1
  local dir="$logs/$scenario"
  # Its own namespace: no stream or durable consumer left by another scenario (a webhook
  # flood's events would otherwise reach the next scenario's consumers).
  export NATS_NAMESPACE="bench_${scenario//-/_}"
  rm -rf "$dir"
  mkdir -p "$dir" "$results"

  pids=()
  stop_services() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  }
  trap stop_services EXIT
  trap 'exit 130' INT TERM

  PGOPTIONS='-c client_min_messages=warning' psql -q -h 127.0.0.1 -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  # The PostgreSQL is shared: others' connections leave fewer for the services' pools
  # (DB_POOL_SIZE each), and past max_connections requests fail with 500s.
  local conns
  conns=$(psql -At -h 127.0.0.1 -U postgres -d postgres \
    -c "SELECT count(*) || ' of ' || current_setting('max_connections') FROM pg_stat_activity")
  echo "   fresh database $DB, NATS namespace $NATS_NAMESPACE; PostgreSQL connections in use: $conns"

  # ready NAME PORT: answers /health (livekit-sim has none: its port is open).
  ready() {
    if [ "$1" = livekit-sim ]; then
      port_taken "$2"
    else
      curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$2/health" 2>/dev/null
    fi
  }
  # start NAME PORT [VAR=value ...]: the binary NAME on PORT, ready before it returns; its
  # pid in $started.
  start() {
    local name=$1 port=$2
    shift 2
    if port_taken "$port"; then
      echo "port $port of $name was taken meanwhile" >&2
      return 1
    fi
    env HTTP_PORT="$port" "$@" "$bin/$name" >"$dir/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
    for _ in $(seq 1 120); do
      if ready "$name" "$port"; then
        echo "   $name (pid $started) on :$port"
        return 0
      fi
      if ! kill -0 "$started" 2>/dev/null; then
        echo "$name exited during start-up:" >&2
        tail -n 20 "$dir/$name.log" >&2
        return 1
      fi
      sleep 0.5
    done
    echo "$name did not become ready within 60 s:" >&2
    tail -n 20 "$dir/$name.log" >&2
    return 1
  }

  local out="$results/$STAMP-$scenario.json"
  local args=()
  case $scenario in
    join-storm)
      start token-issuer "$TOKEN_PORT"
      args=(join-storm --url "http://127.0.0.1:$TOKEN_PORT" --database-url "$DATABASE_URL"
        --viewers "$VIEWERS" --connections "$CONNECTIONS"
        --cpu-watch "token-issuer=$started" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server)
      ;;
    webhook-flood)
      start webhook-ingest "$WEBHOOK_PORT"
      args=(webhook-flood --url "http://127.0.0.1:$WEBHOOK_PORT" --events "$EVENTS" --connections "$CONNECTIONS"
        --cpu-watch "webhook-ingest=$started" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server)
      ;;
    sse-fanout)
      start notifier "$NOTIFIER_PORT"
      args=(sse-fanout --addr "127.0.0.1:$NOTIFIER_PORT" --database-url "$DATABASE_URL"
        --clients "$SSE_CLIENTS" --events "$SSE_EVENTS"
        --cpu-watch "notifier=$started" --cpu-watch nats-server --cpu-watch "postgres:$DB")
      ;;
    call-storm)
      # livekit-sim for call-signaling's CreateRoom/DeleteRoom (no webhooks: nobody joins)
      start livekit-sim "$SIM_PORT" SIM_BIND_ADDRESS=127.0.0.1 LIVEKIT_WEBHOOK_URLS=
      local sim=$started
      start notifier "$NOTIFIER_PORT"
      local notifier=$started
      start call-signaling "$CALLS_PORT" LIVEKIT_URL="http://127.0.0.1:$SIM_PORT"
      args=(call-storm --url "http://127.0.0.1:$CALLS_PORT" --events-url "http://127.0.0.1:$NOTIFIER_PORT"
        --database-url "$DATABASE_URL" --pairs "$PAIRS" --concurrency "$CALL_CONCURRENCY"
        --cpu-watch "call-signaling=$started" --cpu-watch "notifier=$notifier" --cpu-watch "livekit-sim=$sim"
        --cpu-watch postgres --cpu-watch nats-server)
      ;;
    chat-storm)
      start livekit-sim "$SIM_PORT" SIM_BIND_ADDRESS=127.0.0.1 LIVEKIT_WEBHOOK_URLS=
      # CHAT_RATE_PER_MIN stays at its 20: the storm shows the limiter. No reconciliation
      # during the run: the seeded session has no room in the sim.
      start session-manager "$SESSIONS_PORT" LIVEKIT_URL="http://127.0.0.1:$SIM_PORT" RECONCILE_INTERVAL_SECONDS=3600
      args=(chat-storm --url "http://127.0.0.1:$SESSIONS_PORT" --database-url "$DATABASE_URL"
        --participants "$CHAT_PARTICIPANTS" --messages "$CHAT_MESSAGES" --connections "$CONNECTIONS"
        --cpu-watch "session-manager=$started" --cpu-watch postgres --cpu-watch "postgres:$DB" --cpu-watch nats-server)
      ;;
    *)
      echo "unknown scenario $scenario (known: $ALL_SCENARIOS)" >&2
      return 2
      ;;
  esac
  # In the background: bash runs a trap only once the foreground command is done, and a
  # TERM must stop a run that is still seeding.
  "$bin/loadgen" "${args[@]}" --out "$out" >"$dir/summary.txt" &
  pids+=("$!")
  wait "$!"
  local line
  line=$(cat "$dir/summary.txt")
  echo "   $line"
  echo "$line" >>"$logs/summary.txt"
  for log in "$dir"/*.log; do
    lines=$(wc -l <"$log")
    [ "$lines" -eq 0 ] || echo "   $(basename "$log" .log) logged $lines lines at warn or above: $log"
  done
}

if [ "${1:-}" = --scenario ]; then
  : "${STAMP:?--scenario is run by scripts/loadtest.sh itself, with STAMP and PORT_BASE set}"
  set_ports "$PORT_BASE"
  run_one "$2"
  exit
fi

for scenario in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $scenario "* ]] || {
    echo "unknown scenario $scenario (known: $ALL_SCENARIOS)" >&2
    exit 2
  }
done

echo "== build (release)"
cargo build --release -p token-issuer -p webhook-ingest -p notifier -p call-signaling -p session-manager -p livekit-sim -p loadgen
[ "${1:-}" != --build ] || exit 0

scripts/services-up.sh

# PORT_BASE given: those ports or nothing; else the first block of the three that is free
# (something else, another stack or an earlier loadtest still running, may hold one).
if [ -n "${PORT_BASE:-}" ]; then
  ports_free "$PORT_BASE" || exit 1
else
  for base in 18080 28080 38080; do
    if ports_free "$base" 2>/dev/null; then
      PORT_BASE=$base
      break
    fi
  done
  [ -n "${PORT_BASE:-}" ] || { ports_free 18080 || true; echo "no free port block (PORT_BASE)" >&2; exit 1; }
fi
export PORT_BASE
echo "services on ports $TOKEN_PORT-$SIM_PORT (PORT_BASE=$PORT_BASE)"

export STAMP=${STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$logs"
: >"$logs/summary.txt"
child=
trap '[ -z "$child" ] || { kill "$child" 2>/dev/null; wait "$child"; }; exit 130' INT TERM
set -- $SCENARIOS
total=$#
n=0
failed=()
started_all=$SECONDS
for scenario in "$@"; do
  n=$((n + 1))
  echo "== [$n/$total] $scenario ($(date -u +%H:%M:%S))"
  t0=$SECONDS
  "$0" --scenario "$scenario" &
  child=$!
  if wait "$child"; then
    echo "   $scenario done in $((SECONDS - t0)) s"
  else
    echo "   $scenario FAILED after $((SECONDS - t0)) s (logs: $logs/$scenario/)" >&2
    failed+=("$scenario")
  fi
  child=
done

echo
echo "== summary of run $STAMP ($(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'), $(nproc) cores, $((SECONDS - started_all)) s)"
cat "$logs/summary.txt"
ls "$results/$STAMP"-*.json 2>/dev/null | sed 's/^/result: /' || true
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
