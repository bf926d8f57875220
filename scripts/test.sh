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
# Doc examples (nextest does not run them); domain is the crate whose README shows its rules.
cargo test -p domain --doc --locked --quiet
