#!/usr/bin/env bash
# Makes sure PostgreSQL and NATS (JetStream) answer; starts them when they are installed
# but down. Used by both the test command and the local stack.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }

if ! pg_up; then
  echo "PostgreSQL is not answering; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

if ! nats_up; then
  echo "NATS is not answering; starting it"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do nats_up && break; sleep 1; done
  nats_up || { echo "NATS did not start" >&2; exit 1; }
fi
echo "PostgreSQL and NATS answer"
