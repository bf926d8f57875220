#!/usr/bin/env bash
# The test command: formatting, lints, and every test (unit, integration, end-to-end)
# against the real PostgreSQL and NATS of this machine. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services-up.sh

# Test databases of earlier runs (each test clones its own from a migrated template).
psql -h 127.0.0.1 -U postgres -d postgres -Atc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'ipelya_test_%' OR datname LIKE 'ipelya_tmpl_%'" |
  while read -r name; do psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null; done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== domain stays pure (no I/O crates in its tree)"
if cargo tree -p domain -e normal --locked | grep -E "^.*(tokio|diesel|actix|async-nats|reqwest) v" ; then
  echo "domain must not depend on I/O crates" >&2; exit 1
fi
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== deployment files (compose, Kubernetes, Prometheus rules, Grafana, gateway: offline)"
bash scripts/validate-deploy.sh
bash scripts/validate-deploy.sh --self-test
# --- The gateway of the whole-system tests (tests/system): Debian's nginx ------------------
# policy-rc.d keeps the package from starting a system nginx on :80 while it installs.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx (the gateway the end-to-end tests go through)"
  guard=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
fi
# --- schemathesis for the fuzz test (tests/system/tests/fuzz.rs), pinned, in target/ -------
if [ ! -x target/fuzz-venv/bin/schemathesis ]; then
  echo "== installing schemathesis (fuzz test)"
  python3 -m venv target/fuzz-venv
  target/fuzz-venv/bin/pip install -q -r tests/system/fuzz/requirements.txt
fi
# --- Browser test of the operators' dashboard (moderation's tests/it/dashboard.rs) -------
# It drives Debian's Chromium with playwright-core and fails (never skips) without them, so
# install both when missing. package-lock.json is committed; node_modules never is.
if [ -z "${CHROMIUM_PATH:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (dashboard browser test)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -f services/moderation/tests/browser/node_modules/playwright-core/package.json ]; then
  echo "== npm ci (dashboard browser test)"
  (cd services/moderation/tests/browser && npm ci --no-audit --no-fund)
fi
# --- end of the dashboard block ------------------------------------------------------------
echo "== tests"
# JetStream streams that earlier runs' tests left on the shared NATS server
cargo run -q --locked -p testkit --bin nats-gc || echo "nats-gc failed (continuing)"
profile=default
[ "${CI:-}" = "true" ] && profile=ci
cargo nextest run --workspace --locked --profile "$profile" --no-tests=fail
# The fault suite, bounded (tests/faults/README.md has the long form): its own PostgreSQL
# cluster and NATS server, restarted and killed under a seeded workload; fails on a violation.
echo "== fault suite (bounded)"
cargo run -q --locked -p faults
# Doc examples (nextest does not run them); domain is the crate whose README shows its rules.
cargo test -p domain --doc --locked --quiet
