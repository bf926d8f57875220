#!/usr/bin/env python3
"""The checks of scripts/validate-deploy.sh that need more than a tool's own validator.

    validate-deploy.py yaml      ROOT            every YAML file parses
    validate-deploy.py dockerfile ROOT           Dockerfile parses, builds what compose asks
    validate-deploy.py compose   ROOT            healthchecks, traces, scrapes, gateway variables
    validate-deploy.py k8s       ROOT RENDERED   the scaled-out shape the issue asks for
    validate-deploy.py metrics   ROOT SRC        every metric the dashboard and the alert
                                                 rules query is one the code registers

ROOT holds docker-compose.yml, Dockerfile and deploy/ (the repository, or a broken copy in
the self-test); SRC is the repository whose crates/ and services/ register the metrics.
Each problem is printed as `FAIL <check>: <what>`, before the summary line of the check;
the exit code is 1 when there was one.
"""

import json
import pathlib
import re
import sys

import yaml

problems = []


def fail(check, what):
    problems.append(what)
    print(f"FAIL {check}: {what}")


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def yaml_files(root):
    files = [root / "docker-compose.yml"]
    files += sorted(p for p in (root / "deploy").rglob("*") if p.suffix in (".yml", ".yaml"))
    return files


# --------------------------------------------------------------------------- yaml

def check_yaml(root):
    n = 0
    for path in yaml_files(root):
        try:
            load_yaml(path)
            n += 1
        except (yaml.YAMLError, OSError) as e:
            fail("yaml", f"{path.relative_to(root)}: {e}".replace("\n", " "))
    print(f"{n} YAML files parse")


# --------------------------------------------------------------------------- dockerfile

def compose(root):
    return load_yaml(root / "docker-compose.yml")[0]


def built_services(doc):
    """compose service name -> its SERVICE build argument."""
    out = {}
    for name, svc in doc["services"].items():
        build = svc.get("build")
        if isinstance(build, dict):
            out[name] = (build.get("args") or {}).get("SERVICE")
    return out


def check_dockerfile(root, src):
    import dockerfile

    try:
        cmds = dockerfile.parse_file(str(root / "Dockerfile"))
    except dockerfile.GoParseError as e:
        fail("dockerfile", f"does not parse: {e}")
        return
    stages = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
    last = stages[-1] if stages else 0
    built = set()
    for i, c in enumerate(cmds):
        if c.cmd == "RUN" and "cargo build" in c.value[0]:
            built |= set(re.findall(r"-p\s+([\w-]+)", c.value[0]))
        # SERVICE before the last stage would give every service its own build of the
        # workspace (a build argument is part of the cache key of the RUNs after it).
        if c.cmd == "ARG" and c.value[0].split("=")[0] == "SERVICE" and i < last:
            fail("dockerfile", "ARG SERVICE before the runtime stage defeats the shared build")
    if not any(c.cmd == "RUN" and "cargo chef cook" in c.value[0] for c in cmds):
        fail("dockerfile", "no `cargo chef cook` layer (the cached dependency layer)")
    for name, arg in built_services(compose(root)).items():
        if arg not in built:
            fail("dockerfile", f"compose service {name} asks SERVICE={arg}, which the Dockerfile does not build")
        elif not (src / "services" / arg / "Cargo.toml").exists():
            fail("dockerfile", f"SERVICE={arg} is no package under services/")
    print(f"Dockerfile: {len(stages)} stages, builds {', '.join(sorted(built))}")


# --------------------------------------------------------------------------- compose

def template_variables(root):
    """${VAR}s of the gateway template outside comments (the #tls# lines are optional)."""
    path = root / "deploy/gateway/ipelya.conf.template"
    if not path.exists():
        return None
    names = set()
    for line in path.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            names |= set(re.findall(r"\$\{(\w+)\}", line))
    return names


def check_compose(root):
    doc = compose(root)
    services = doc["services"]
    ports = {}
    for name in built_services(doc):
        svc = services[name]
        env = svc.get("environment") or {}
        if "healthcheck" not in svc or "/health" not in json.dumps(svc["healthcheck"]):
            fail("compose", f"{name} has no healthcheck on /health")
        if not str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).startswith("http://otel-collector:4318"):
            fail("compose", f"{name} does not send its traces to otel-collector:4318")
        if "HTTP_PORT" not in env:
            fail("compose", f"{name} sets no HTTP_PORT")
        ports[name] = str(env.get("HTTP_PORT"))
        if svc.get("ports"):
            fail("compose", f"{name} publishes a port: only the gateway is published")
    # every service scraped
    prom = load_yaml(root / "deploy/prometheus/prometheus.yml")[0]
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]}
    for name, port in ports.items():
        if f"{name}:{port}" not in targets:
            fail("compose", f"Prometheus does not scrape {name}:{port}")
    # the collector takes OTLP/HTTP on 4318 and every pipeline's parts are defined
    col = load_yaml(root / "deploy/otel/collector.yaml")[0]
    http = (((col.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http") or {}
    if not str(http.get("endpoint", "")).endswith(":4318"):
        fail("otel", "the otlp receiver does not listen for OTLP/HTTP on :4318")
    pipelines = (col.get("service") or {}).get("pipelines") or {}
    if "traces" not in pipelines:
        fail("otel", "no traces pipeline")
    for pname, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for part in p.get(kind, []):
                if part not in (col.get(kind) or {}):
                    fail("otel", f"pipeline {pname} uses {kind[:-1]} {part}, which is not defined")
    # LiveKit's webhooks reach webhook-ingest
    lk = load_yaml(root / "deploy/livekit/livekit.yaml")[0]
    want = f"http://webhook-ingest:{ports.get('webhook-ingest')}/webhooks/livekit"
    if want not in (lk.get("webhook") or {}).get("urls", []):
        fail("compose", f"livekit.yaml sends no webhook to {want}")
    # the gateway template gets every variable it needs
    names = template_variables(root)
    gw = services.get("gateway")
    if gw is None:
        fail("compose", "no gateway service")
    elif names is not None:
        missing = names - set((gw.get("environment") or {}).keys())
        if missing:
            fail("compose", f"gateway does not set {', '.join(sorted(missing))}")
    published = [n for n, s in services.items() if s.get("ports") and n not in (
        "gateway", "postgres", "nats", "livekit", "otel-collector", "jaeger", "prometheus", "grafana")]
    if published:
        fail("compose", f"unexpected published ports: {published}")
    print(f"compose: {len(ports)} services with healthchecks, traces and scrapes; gateway variables set")


# --------------------------------------------------------------------------- k8s

# A service's stop takes at most 10 s (in-flight requests) + 10 s (consumers, workers)
# + 10 s (outbox flush); the preStop sleep comes on top.
MIN_GRACE = 40


def check_k8s(root, rendered):
    docs = load_yaml(rendered)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    pdbs = [p["spec"]["selector"]["matchLabels"] for p in by_kind.get("PodDisruptionBudget", [])]
    hpa = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in by_kind.get("HorizontalPodAutoscaler", [])}
    services = set(built_services(compose(root)).values())
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for name in sorted(services | {"gateway"}):
        if name not in deployments:
            fail("k8s", f"no Deployment {name}")
            continue
        d = deployments[name]
        spec = d["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if spec.get("replicas", 1) < 2:
            fail("k8s", f"{name}: fewer than 2 replicas")
        if name in hpa and hpa[name].get("minReplicas", 1) < 2:
            fail("k8s", f"{name}: its autoscaler may go below 2 replicas")
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in pdbs):
            fail("k8s", f"{name}: no PodDisruptionBudget selects its pods")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace < MIN_GRACE:
            fail("k8s", f"{name}: terminationGracePeriodSeconds {grace} < {MIN_GRACE}")
        for c in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if path != "/health":
                    fail("k8s", f"{name}: {probe} is not an HTTP GET of /health")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        fail("k8s", f"{name}: no {part}.{r}")
            if "preStop" not in (c.get("lifecycle") or {}):
                fail("k8s", f"{name}: no preStop (endpoints must drop before SIGTERM)")
        if name in services:
            ann = spec["template"]["metadata"].get("annotations", {})
            if ann.get("prometheus.io/scrape") != "true":
                fail("k8s", f"{name}: not annotated for Prometheus")
            env = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
            refs = {r.get("configMapRef", r.get("secretRef", {})).get("name", "")
                    for c in pod["containers"] for r in c.get("envFrom", [])}
            if "HTTP_PORT" not in env or not any(r.startswith("ipelya-config") for r in refs) \
                    or "ipelya-secrets" not in refs:
                fail("k8s", f"{name}: does not read HTTP_PORT, ipelya-config and ipelya-secrets")
    # NATS: 3 nodes, clustered, JetStream, streams replicated 3 times
    nats = [s for s in by_kind.get("StatefulSet", []) if s["metadata"]["name"] == "nats"]
    if not nats or nats[0]["spec"].get("replicas") != 3:
        fail("k8s", "no 3-node NATS StatefulSet")
    configs = {c["metadata"]["name"].rsplit("-", 1)[0] if c["metadata"]["name"].startswith("ipelya-gateway")
               else c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    conf = (configs.get("nats-config") or {}).get("data", {}).get("nats.conf", "")
    routes = re.findall(r"nats://nats-\d\.nats-headless:6222", conf)
    if "jetstream" not in conf or len(set(routes)) != 3:
        fail("k8s", "nats.conf has no JetStream or not 3 cluster routes")
    if (configs.get("ipelya-config") or {}).get("data", {}).get("NATS_STREAM_REPLICAS") != "3":
        fail("k8s", "ipelya-config does not set NATS_STREAM_REPLICAS to 3")
    headless = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == "nats-headless"]
    if not headless or headless[0]["spec"].get("clusterIP") != "None":
        fail("k8s", "no headless Service nats-headless for the cluster routes")
    # the gateway gets every variable of its template, from a ConfigMap made of that file
    names = template_variables(root)
    gw = deployments.get("gateway")
    if gw is not None and names is not None:
        env = {e["name"] for c in gw["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
        missing = names - env
        if missing:
            fail("k8s", f"gateway does not set {', '.join(sorted(missing))}")
        gwconf = configs.get("ipelya-gateway")
        tpl = (root / "deploy/gateway/ipelya.conf.template").read_text()
        if gwconf is None:
            fail("k8s", "no ConfigMap ipelya-gateway (build deploy/, not deploy/k8s)")
        else:
            if gwconf["data"].get("ipelya.conf.template") != tpl:
                fail("k8s", "ConfigMap ipelya-gateway is not deploy/gateway/ipelya.conf.template")
            openapi = root / "deploy/gateway/openapi.json"
            if openapi.exists() and gwconf["data"].get("openapi.json") != openapi.read_text():
                fail("k8s", "ConfigMap ipelya-gateway lacks deploy/gateway/openapi.json "
                            "(add gateway/openapi.json to deploy/kustomization.yaml's files)")
    print(f"k8s: {len(deployments)} Deployments (replicas, /health probes, resources, preStop, "
          f"grace >= {MIN_GRACE} s, PDBs), 3-node NATS with 3x streams, gateway from its template")


# --------------------------------------------------------------------------- metrics

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "delta",
    "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sqrt", "stddev", "stddev_over_time", "stdvar", "sum", "sum_over_time", "time", "timestamp",
    "topk", "vector",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}
# Labels Prometheus adds to every series of ours (prometheus.yml) and its own series.
TARGET_LABELS = {"job", "instance", "service"}
BUILTIN = {"up": set()}


def registered_metrics(src):
    """name -> (kind, labels) of every counter!/gauge!/histogram! in crates/ and services/."""
    out = {}
    for top in ("crates", "services"):
        for path in (src / top).rglob("*.rs"):
            if "tests" in path.relative_to(src).parts:
                continue
            text = path.read_text()
            for m in re.finditer(r"\b(counter|histogram|gauge)!\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"", text):
                depth, i = 1, m.end()
                while depth and i < len(text):
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                args = text[m.end():i]
                labels = set(re.findall(r"\"(\w+)\"\s*=>", args))
                for var in re.findall(r"&(\w+)", args):
                    lm = re.search(r"let\s+" + var + r"\b[^=]*=\s*\[(.*?)\];", text, re.S)
                    if lm:
                        labels |= set(re.findall(r"\(\s*\"(\w+)\"\s*,", lm.group(1)))
                kind, name = m.group(1), m.group(2)
                prev = out.get(name, (kind, set()))
                out[name] = (kind, prev[1] | labels)
    return out


def series(registered):
    """Series name -> labels, as the Prometheus exporter writes them."""
    out = dict(BUILTIN)
    for name, (kind, labels) in registered.items():
        if kind == "histogram":
            out[name + "_bucket"] = labels | {"le"}
            out[name + "_sum"] = labels
            out[name + "_count"] = labels
        else:
            out[name] = labels
    return out


def check_expr(where, expr, known, legend=None):
    e = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    e = re.sub(r"\$\{?(\w+)\}?", "x", e)
    used = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        used |= {s.strip() for s in m.group(2).split(",") if s.strip()}
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"\{([^}]*)\}", e):
        used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", re.sub(r'"(?:[^"\\]|\\.)*"', '""', m.group(1))))
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    metrics = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call:
            if word not in PROMQL_FUNCTIONS:
                fail("metrics", f"{where}: unknown PromQL function {word}()")
        elif word not in KEYWORDS and not re.fullmatch(r"\d.*", word):
            metrics.add(word)
    if not metrics:
        fail("metrics", f"{where}: queries no metric: {expr}")
    allowed = set(TARGET_LABELS)
    for name in metrics:
        if name not in known:
            fail("metrics", f"{where}: {name} is not a metric the code registers")
        else:
            allowed |= known[name]
    for label in sorted(used - allowed):
        fail("metrics", f"{where}: label {label} is not on {', '.join(sorted(metrics))}")
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""):
        if label not in allowed:
            fail("metrics", f"{where}: legend label {label} is not on {', '.join(sorted(metrics))}")
    return metrics


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def check_metrics(root, src):
    registered = registered_metrics(src)
    known = series(registered)
    used = set()
    # Grafana: the dashboards parse, use provisioned data sources, query real metrics
    uids = {d["uid"] for f in (root / "deploy/grafana/provisioning/datasources").glob("*.y*ml")
            for d in load_yaml(f)[0].get("datasources", [])}
    dashboards = sorted((root / "deploy/grafana/dashboards").glob("*.json"))
    if not dashboards:
        fail("grafana", "no dashboard under deploy/grafana/dashboards")
    queries = 0
    for path in dashboards:
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            fail("grafana", f"{path.name} does not parse: {e}")
            continue
        ids = [p.get("id") for p in panels_of(dash)]
        if len(ids) != len(set(ids)):
            fail("grafana", f"{path.name}: panel ids repeat")
        for p in panels_of(dash):
            for t in p.get("targets", []):
                ds = (t.get("datasource") or p.get("datasource") or {}).get("uid")
                if ds not in uids:
                    fail("grafana", f"{path.name} panel {p.get('title')!r}: data source {ds} is not provisioned")
                used |= check_expr(f"{path.name} panel {p.get('title')!r}", t["expr"], known, t.get("legendFormat"))
                queries += 1
    # Prometheus alert rules
    rules = 0
    for path in sorted((root / "deploy/prometheus").glob("*.y*ml")):
        doc = load_yaml(path)[0]
        for g in doc.get("groups", []) if isinstance(doc, dict) else []:
            for r in g.get("rules", []):
                used |= check_expr(f"{path.name} {r.get('alert') or r.get('record')}", r["expr"], known)
                rules += 1
    bases = {re.sub(r"_(bucket|sum|count)$", "", m) if m not in registered else m for m in used}
    unused = sorted(set(registered) - bases)
    print(f"{queries} dashboard queries and {rules} alert rules over {len(registered)} registered metrics"
          + (f" (not charted: {', '.join(unused)})" if unused else ""))


def main():
    what, root = sys.argv[1], pathlib.Path(sys.argv[2])
    if what == "yaml":
        check_yaml(root)
    elif what == "dockerfile":
        check_dockerfile(root, pathlib.Path(sys.argv[3]))
    elif what == "compose":
        check_compose(root)
    elif what == "k8s":
        check_k8s(root, pathlib.Path(sys.argv[3]))
    elif what == "metrics":
        check_metrics(root, pathlib.Path(sys.argv[3]))
    else:
        sys.exit(f"unknown check {what}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
