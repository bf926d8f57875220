#!/usr/bin/env bash
# Renders the gateway for a run from a directory of its own: DIR/ipelya.conf (the template
# with every ${VAR} replaced) and DIR/nginx.conf (local-nginx.conf). Unset variables get the
# local stack's values (scripts/stack.sh's ports). `--tls` also turns the template's TLS
# lines on (then GATEWAY_TLS_PORT, TLS_CERT_FILE and TLS_KEY_FILE must be set).
#   deploy/gateway/render.sh [--tls] DIR
# Then: nginx -p DIR/ -c DIR/nginx.conf -g 'daemon off;'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

tls=0
if [ "${1-}" = "--tls" ]; then tls=1; shift; fi
dir="${1:?usage: render.sh [--tls] DIR}"

export TOKEN_ISSUER_UPSTREAM="${TOKEN_ISSUER_UPSTREAM:-127.0.0.1:8081}"
export SESSION_MANAGER_UPSTREAM="${SESSION_MANAGER_UPSTREAM:-127.0.0.1:8082}"
export CALL_SIGNALING_UPSTREAM="${CALL_SIGNALING_UPSTREAM:-127.0.0.1:8083}"
export MODERATION_UPSTREAM="${MODERATION_UPSTREAM:-127.0.0.1:8084}"
export WEBHOOK_INGEST_UPSTREAM="${WEBHOOK_INGEST_UPSTREAM:-127.0.0.1:8085}"
export NOTIFIER_UPSTREAM="${NOTIFIER_UPSTREAM:-127.0.0.1:8086}"
export GATEWAY_PORT="${GATEWAY_PORT:-8080}"
export OPS_ALLOW_CIDR="${OPS_ALLOW_CIDR:-127.0.0.1/32}"
export GATEWAY_MAX_BODY="${GATEWAY_MAX_BODY:-64k}"
export GATEWAY_RATE_LIMIT="${GATEWAY_RATE_LIMIT:-50r/s}"
export GATEWAY_RATE_BURST="${GATEWAY_RATE_BURST:-100}"
export OPENAPI_FILE="${OPENAPI_FILE:-$here/openapi.json}"

mkdir -p "$dir"
# Only ${NAME} of a set variable is replaced, as the nginx image's envsubst step does.
perl -pe 's/\$\{(\w+)\}/exists $ENV{$1} ? $ENV{$1} : "\${$1}"/ge' "$here/ipelya.conf.template" \
  | if [ "$tls" = 1 ]; then sed 's/#tls# //'; else cat; fi >"$dir/ipelya.conf"
cp "$here/local-nginx.conf" "$dir/nginx.conf"

# A placeholder left outside a comment would reach nginx as an unknown variable.
if left=$(grep -v '^[[:space:]]*#' "$dir/ipelya.conf" | grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' | sort -u | tr '\n' ' ') && [ -n "$left" ]; then
  echo "render.sh: unset variables: $left" >&2
  exit 1
fi
