#!/usr/bin/env bash
# Validates the deployment files offline: docker-compose.yml, the Dockerfile, every YAML
# file under deploy/, the Kubernetes manifests against the Kubernetes schemas, the Grafana
# dashboard and the Prometheus rules against the metrics the code registers, promtool's
# checks and rule tests, and the gateway's own check (nginx -t). Prints each check; exits
# non-zero when any fails (all are run, every problem is printed).
#
#   scripts/validate-deploy.sh               validate the repository
#   scripts/validate-deploy.sh --self-test   break copies of the files on purpose and
#                                            expect each breakage to be caught
#
# Installs what it lacks, once, and keeps it under target/: a Python venv with PyYAML,
# kubernetes-validate (the schemas ship inside it) and dockerfile (target/deploy-venv),
# promtool unpacked from Debian's prometheus package without installing it
# (target/deploy-tools), and Debian's docker-compose and nginx when missing (apt-get with a
# policy-rc.d guard, so no daemon starts). A second run installs nothing.
# DEPLOY_ROOT (default: the repository) is where docker-compose.yml, Dockerfile and deploy/
# are read from; the self-test points it at broken copies.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${DEPLOY_ROOT:-$repo}"
venv="$repo/target/deploy-venv"
tools="$repo/target/deploy-tools"
work="$repo/target/deploy-check"
py_requirements="PyYAML==6.0.2 kubernetes-validate==1.37.0 dockerfile==3.4.0"
# The oldest Kubernetes still commonly run, and the newest the schemas know.
k8s_versions="1.29.0 1.37.0"

# ----------------------------------------------------------------------------- tools

guard_created=0
cleanup() { if [ "$guard_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt_install() { # packages...
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard_created=1
  fi
  echo "installing $* (apt-get; no service is started)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  cleanup
  guard_created=0
}

ensure_tools() {
  command -v docker-compose >/dev/null || apt_install docker-compose
  if [ -x "$repo/deploy/gateway/check.sh" ] && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx
  fi
  if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$py_requirements" ]; then
    echo "installing $py_requirements into target/deploy-venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || { rm -rf "$venv" && apt_install python3-venv && python3 -m venv "$venv"; }
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $py_requirements
    echo "$py_requirements" >"$venv/.requirements"
  fi
  if [ ! -x "$tools/root/usr/bin/promtool" ]; then
    echo "unpacking promtool from Debian's prometheus package into target/deploy-tools"
    rm -rf "$tools" && mkdir -p "$tools"
    (cd "$tools" && apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; })
    dpkg -x "$tools"/prometheus_*.deb "$tools/root"
    rm -f "$tools"/prometheus_*.deb
  fi
}

# ----------------------------------------------------------------------------- checks

failures=0
check() { # name command...: runs it, prints its output indented, counts a failure
  local name="$1"; shift
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "ok   $name"
  else
    echo "FAIL $name"
    failures=$((failures + 1))
  fi
  if [ -n "$out" ]; then sed 's/^/     /' <<<"$out"; fi
}

py() { "$venv/bin/python" "$repo/scripts/validate-deploy.py" "$@"; }
promtool() { "$tools/root/usr/bin/promtool" "$@"; }

compose_config() {
  (cd "$root" && docker-compose -f docker-compose.yml config -q)
}

k8s_render() {
  # deploy/ is the entry (the gateway's ConfigMap is generated from deploy/gateway/)
  mkdir -p "$work"
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$root/deploy" >"$out_k8s" || return 1
    echo "kubectl kustomize deploy: $(grep -c '^kind:' "$out_k8s") resources"
  else
    # Without kubectl: the base's files as they are (no gateway ConfigMap, no namespace).
    echo "kubectl is not installed: validating deploy/k8s/*.yaml as written, unbuilt"
    "$venv/bin/python" - "$root/deploy/k8s" >"$out_k8s" <<'EOF'
import pathlib, sys, yaml
base = pathlib.Path(sys.argv[1])
k = yaml.safe_load((base / "kustomization.yaml").read_text())
docs = [d for r in k["resources"] for d in yaml.safe_load_all((base / r).read_text()) if d]
print(yaml.safe_dump_all(docs))
EOF
  fi
}

k8s_schemas() {
  local v
  for v in $k8s_versions; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$out_k8s" "$root/deploy/k8s/secret.example.yaml" || return 1
    echo "$(grep -c '^kind:' "$out_k8s") resources and secret.example.yaml valid against Kubernetes $v (strict)"
  done
}

k8s_policy() {
  if command -v kubectl >/dev/null; then
    py k8s "$root" "$out_k8s"
  else
    echo "skipped: needs the built manifests (kubectl kustomize)"
  fi
}

gateway_check() {
  if [ -x "$root/deploy/gateway/check.sh" ]; then
    "$root/deploy/gateway/check.sh"
  else
    echo "skipped: deploy/gateway/check.sh does not exist yet"
  fi
}

validate() {
  out_k8s="$work/k8s-$$.yaml"
  echo "validating the deployment files of $root"
  check "docker-compose config -q" compose_config
  check "YAML parses (docker-compose.yml, deploy/**)" py yaml "$root"
  check "Dockerfile parses and builds every compose service" py dockerfile "$root" "$repo"
  check "compose: healthchecks on /health, traces to the collector, scrapes, gateway variables" py compose "$root"
  check "Kubernetes manifests build" k8s_render
  check "Kubernetes schemas" k8s_schemas
  check "Kubernetes shape: replicas, probes, resources, termination, PDBs, 3-node NATS" k8s_policy
  check "Grafana dashboard and alert rules query registered metrics" py metrics "$root" "$repo"
  check "promtool check config" promtool check config "$root/deploy/prometheus/prometheus.yml"
  check "promtool check rules" promtool check rules "$root/deploy/prometheus/alerts.yml"
  check "promtool test rules" promtool test rules "$root/deploy/prometheus/alerts_test.yml"
  check "gateway: deploy/gateway/check.sh (nginx -t)" gateway_check
  rm -f "$out_k8s"
  if [ "$failures" != 0 ]; then
    echo "deployment files: $failures check(s) failed"
    return 1
  fi
  echo "deployment files: every check passed"
}

# ----------------------------------------------------------------------------- self-test

# Each breakage: a name, the check whose FAIL line must appear, a command run in the copy.
# The functions above that run several commands stop at the first failure themselves
# (`|| return 1`): inside check's `|| rc=$?`, set -e does not apply.
breakages=(
  "broken PromQL in an alert rule|promtool check rules|sed -i 's/rate(token_failures_total\[5m\])/rate(token_failures_total[5m]/' deploy/prometheus/alerts.yml"
  "dashboard queries a metric nobody registers|query registered metrics|sed -i 's/tokens_issued_total/tokens_issued_totl/' deploy/grafana/dashboards/ipelya-live.json"
  "a readiness probe off /health|Kubernetes shape|sed -i '0,/path: \/health/s//path: \/ready/' deploy/k8s/services/notifier.yaml"
  "a misspelt Kubernetes field|Kubernetes schemas|sed -i 's/terminationGracePeriodSeconds:/terminationGracePeriodSecond:/' deploy/k8s/services/token-issuer.yaml"
  "NATS streams left at one replica|Kubernetes shape|sed -i 's/NATS_STREAM_REPLICAS: \"3\"/NATS_STREAM_REPLICAS: \"1\"/' deploy/k8s/config.yaml"
  "compose service with an unknown key|docker-compose config|sed -i 's/^  jaeger:/  jaeger:\n    colour: blue/' docker-compose.yml"
  "invalid YAML in the collector config|YAML parses|printf 'receivers: [\n' >>deploy/otel/collector.yaml"
  "a service without traces|traces to the collector|sed -i 's#http://otel-collector:4318#http://localhost:4318#' docker-compose.yml"
  "an alert that no longer fires as its test says|promtool test rules|sed -i 's/> 1000/> 5000/' deploy/prometheus/alerts.yml"
)

self_test() {
  local missed=0 entry name expect cmd copy i=0
  for entry in "${breakages[@]}"; do
    IFS='|' read -r name expect cmd <<<"$entry"
    i=$((i + 1))
    copy="$work/broken-$i"
    rm -rf "$copy" && mkdir -p "$copy"
    cp -r "$repo/deploy" "$repo/docker-compose.yml" "$repo/Dockerfile" "$copy/"
    (cd "$copy" && eval "$cmd")
    if diff -rq "$repo/deploy" "$copy/deploy" >/dev/null && cmp -s "$repo/docker-compose.yml" "$copy/docker-compose.yml"; then
      echo "FAIL self-test: the breakage \"$name\" changed nothing (its sed no longer matches)"
      missed=$((missed + 1))
      continue
    fi
    if out="$(DEPLOY_ROOT="$copy" bash "$repo/scripts/validate-deploy.sh" 2>&1)"; then
      echo "FAIL self-test: \"$name\" was not caught"
      missed=$((missed + 1))
    elif grep -q "^FAIL .*$expect" <<<"$out"; then
      echo "ok   self-test: \"$name\" caught by: $(grep "^FAIL .*$expect" <<<"$out" | head -1 | sed 's/^FAIL //')"
      # the first line of the check's own output that says what is wrong
      sed -n "/^FAIL .*$expect/,/^[a-zA-Z]/p" <<<"$out" | tail -n +2 | grep -m1 -E 'FAIL |ERROR|[Ee]rror|FAILED|invalid' \
        | sed 's/^ */       /' || true
    else
      echo "FAIL self-test: \"$name\" failed, but not in \"$expect\":"
      grep '^FAIL' <<<"$out" | sed 's/^/     /'
      missed=$((missed + 1))
    fi
    rm -rf "$copy"
  done
  if [ "$missed" != 0 ]; then
    echo "self-test: $missed of ${#breakages[@]} breakages not caught"
    return 1
  fi
  echo "self-test: all ${#breakages[@]} breakages caught"
}

ensure_tools
case "${1-}" in
  "") validate ;;
  --self-test) self_test ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
