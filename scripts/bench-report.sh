#!/usr/bin/env bash
# One command for the benchmark report: builds the release binaries, runs the load
# generator's five scenarios (scripts/loadtest.sh: each on a fresh database with only the
# services it needs), then writes bench/reports/<stamp>.md and bench/reports/latest.md with a
# table and an SVG chart per scenario comparing this run with the earlier ones
# (`loadgen report`, charts in bench/reports/<stamp>/).
#
#   scripts/bench-report.sh            # full size, as the committed measurements (several minutes)
#   QUICK=1 scripts/bench-report.sh    # small sizes: a smoke check in about two minutes after the build
#   REPORT_LAST=12 scripts/bench-report.sh   # runs per scenario in the tables and charts (8)
#
# Every size variable of scripts/loadtest.sh (VIEWERS, EVENTS, CONNECTIONS, SSE_CLIENTS,
# SSE_EVENTS, PAIRS, CALL_CONCURRENCY, CHAT_PARTICIPANTS, CHAT_MESSAGES) and SCENARIOS apply.
# When a scenario fails, the report is still written from the ones that ran and the exit
# status is 1. Only the machine's PostgreSQL and NATS are used; every process started is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release

scripts/loadtest.sh --build
# The run's stamp once the build is done: it is when the measuring started.
export STAMP=${STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
echo "== benchmark run $STAMP$([ "${QUICK:-0}" = 1 ] && echo ' (QUICK sizes)')"
status=0
# In the background so that a TERM sent to this script alone still stops the services.
scripts/loadtest.sh &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM
wait "$child" || status=$?
trap - INT TERM
if ! ls bench/results/"$STAMP"-*.json >/dev/null 2>&1; then
  echo "no results of run $STAMP: no report" >&2
  exit 1
fi

echo
echo "== report"
"$bin/loadgen" report --results bench/results --out-dir bench/reports --stamp "$STAMP" \
  --last "${REPORT_LAST:-8}"
echo "read it: bench/reports/$STAMP.md (also bench/reports/latest.md)"
exit "$status"
