#!/usr/bin/env bash
# Validates the gateway: the template rendered with local values (render.sh) and checked by
# `nginx -t`, once as it is and once with its TLS lines on (a throwaway self-signed
# certificate). Exits non-zero with nginx's message on any error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

nginx="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
if [ ! -x "$nginx" ]; then
  echo "check.sh: nginx is not installed (apt-get install nginx)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check() { # dir
  if ! out=$("$nginx" -t -q -p "$1/" -c "$1/nginx.conf" 2>&1); then
    echo "check.sh: nginx -t failed for $1:" >&2
    echo "$out" >&2
    exit 1
  fi
}

"$here/render.sh" "$tmp/plain"
check "$tmp/plain"

if ! command -v openssl >/dev/null; then
  echo "gateway config OK (nginx -t, plain; TLS variant skipped: no openssl)"
  exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
GATEWAY_TLS_PORT=8443 TLS_CERT_FILE="$tmp/cert.pem" TLS_KEY_FILE="$tmp/key.pem" \
  "$here/render.sh" --tls "$tmp/tls"
grep -q 'listen 8443 ssl http2;' "$tmp/tls/ipelya.conf"
check "$tmp/tls"

echo "gateway config OK (nginx -t, plain and TLS)"
