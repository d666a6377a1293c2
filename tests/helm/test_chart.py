"""Tests of the Helm chart in helm/sessiond, offline: no cluster, no helm binary.

The chart is linted and rendered by the real Helm engine (Helm's Go SDK, shipped
in the `helm-python-sdk` wheel as `libhelm_c` and driven through `helm_python`).
Every rendered manifest is validated against the Kubernetes OpenAPI schemas
that `kubernetes-validate` ships, in strict mode (unknown fields fail), for the
oldest Kubernetes the chart supports and the newest the package knows.

Custom resources: kubernetes-validate knows built-in kinds only. The CRD kinds
the chart renders, ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1),
are validated against the schemas in tests/helm/schemas instead; any other kind
without a schema fails the test rather than being skipped.

The Grafana dashboard and the alerts are checked here for their shape (the
JSON parses, every panel has a query on the data source variable, every rule
has its fields); that every metric they name exists on a running sessiond's
/metrics is checked by tests/it/observability.rs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import helm_python as helm
import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubeval

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sessiond"
HERE = Path(__file__).resolve().parent
VALUES_FILES = sorted((HERE / "values").glob("*.yaml"))
RELEASE = "rel"
NAMESPACE = "sessiond"
FULLNAME = "rel-sessiond"
HEALTH_SERVICE = "sessiond.v1.SessionService"
# What a render without tokens and without TLS must say.
INSECURE = {"insecure": True}

# The chart's floor (Chart.yaml kubeVersion: the native preStop sleep is on by
# default from 1.30) and the newest version kubernetes-validate ships schemas for.
KUBE_VERSIONS = ["1.30.0", kubeval.latest_version()]

# Schemas of custom resource kinds, keyed by (apiVersion, kind).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas" / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): HERE / "schemas" / "prometheusrule-monitoring-v1.json",
}

DASHBOARD = CHART / "dashboards" / "sessiond.json"
ALERTS = {
    "SessiondInternalErrors",
    "SessiondUnavailable",
    "SessiondSlowCalls",
    "SessiondCacheFeedDown",
    "SessiondStoreDown",
    "SessiondLeaseExpiries",
    "SessiondOverloaded",
}

CASES = ["default"] + [path.stem for path in VALUES_FILES]


# --- helpers -----------------------------------------------------------------


def load_values(case: str) -> dict:
    """User values of a case, parsed by Helm's own values parser (as `-f` does)."""
    if case == "default":
        # The chart's defaults, plus the one value they cannot do without: no
        # tokens and no TLS must be chosen knowingly.
        return {"insecure": True}
    return helm.values_from_yaml((HERE / "values" / f"{case}.yaml").read_text())


def render(chart: helm.Chart, values: dict) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object rendered, NOTES.txt left out."""
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str, name: str = FULLNAME) -> dict:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def container(docs: list[dict]) -> dict:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (main,) = [c for c in pod["containers"] if c["name"] == "sessiond"]
    return main


def env_of(docs: list[dict]) -> dict[str, dict]:
    """The sessiond container's env, by name (a duplicate name fails)."""
    env = container(docs)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e for e in env}


def env_value(docs: list[dict], name: str) -> str:
    entry = env_of(docs)[name]
    assert "valueFrom" not in entry, f"{name} comes from a reference, not a value"
    return entry["value"]


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"not a whole number of seconds: {duration!r}"
    return int(match.group(1))


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def chart_without_schema(tmp_path_factory):
    """The chart minus values.schema.json: shows what the templates alone refuse."""
    copy = tmp_path_factory.mktemp("chart") / "sessiond"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    with helm.Chart.load(copy) as loaded:
        assert loaded.schema is None
        yield loaded


@pytest.fixture(scope="session")
def rendered(chart):
    """Rendered objects of every case, rendered once."""
    return {case: manifests(render(chart, load_values(case))) for case in CASES}


# --- lint and schema-level validity ------------------------------------------


def test_values_files_are_all_exercised():
    assert len(VALUES_FILES) >= 4, "keep at least four values files in tests/helm/values"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_lint_is_clean(case, kube_version):
    report = helm.lint(CHART, load_values(case), strict=True, kube_version=f"v{kube_version}")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "sessiond"
    assert meta["appVersion"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.30.0-0"
    assert chart.schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_value_is_typed_in_the_schema(chart):
    """Each key of values.yaml appears in values.schema.json, which refuses unknown keys."""
    def walk(values: dict, schema: dict, path: str) -> None:
        assert schema.get("additionalProperties") is False or "properties" not in schema, path
        props = schema.get("properties", {})
        for key, value in values.items():
            assert key in props, f"{path}{key} is not in values.schema.json"
            sub = props[key]
            assert "type" in sub or "oneOf" in sub, f"{path}{key} has no type"
            if isinstance(value, dict) and "properties" in sub:
                walk(value, sub, f"{path}{key}.")

    walk(chart.values, chart.schema, "")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_manifests_validate_against_kubernetes(rendered, case, kube_version):
    docs = rendered[case]
    assert docs, "nothing rendered"
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        crd_schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd_schema is not None:
            schema = json.loads(crd_schema.read_text())
            jsonschema.Draft202012Validator(schema).validate(doc)
            continue
        try:
            kubeval.validate(doc, kube_version, strict=True)
        except kubeval.ValidationError as err:
            pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {'.'.join(map(str, err.path))}: {err.message}")
        except kubeval.SchemaNotFoundError as err:
            pytest.fail(f"{where}: {err.message}; add a schema to CRD_SCHEMAS if it is a custom resource")


def test_crd_schema_catches_mistakes(rendered):
    """The hand-written ServiceMonitor schema is not a rubber stamp."""
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")].read_text())
    monitor = one(rendered["all-optional"], "ServiceMonitor")
    jsonschema.Draft202012Validator(schema).validate(monitor)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.Draft202012Validator(schema).validate(broken)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (lambda rule: rule.update({"for": "five minutes"}), "does not match"),
        (lambda rule: rule.update({"annotation": rule.pop("annotations")}), "Additional properties"),
        (lambda rule: rule.pop("expr"), "'expr' is a required property"),
        (lambda rule: rule.update({"record": "sessiond:errors"}), "is not valid under any of the given schemas"),
        (lambda rule: rule.update({"labels": {"severity": 2}}), "is not of type 'string'"),
    ],
    ids=["bad-for", "misspelt-key", "no-expr", "alert-and-record", "label-not-string"],
)
def test_prometheusrule_schema_catches_mistakes(rendered, mistake, message):
    """The hand-written PrometheusRule schema is not a rubber stamp either."""
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")].read_text())
    rules = one(rendered["all-optional"], "PrometheusRule")
    jsonschema.Draft202012Validator(schema).validate(rules)
    broken = json.loads(json.dumps(rules))
    mistake(broken["spec"]["groups"][0]["rules"][0])
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.Draft202012Validator(schema).validate(broken)


# --- concrete properties -----------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_pods_are_locked_down(rendered, case):
    docs = rendered[case]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root filesystem needs a writable /tmp.
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["tmp"] == "/tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("case", CASES)
def test_probes_are_native_grpc(rendered, case):
    main = container(rendered[case])
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["grpc"] == 50051
    # The kubelet's gRPC probes cannot speak TLS: with TLS on they ask the
    # plaintext health-only listener, which the server is told to open.
    if "SESSIOND_TLS_CERT" in env_of(rendered[case]):
        grpc_port = ports["health"]
        assert grpc_port == 50052
        assert env_value(rendered[case], "SESSIOND_HEALTH_LISTEN") == "0.0.0.0:50052"
    else:
        grpc_port = ports["grpc"]
        assert "health" not in ports
        assert "SESSIOND_HEALTH_LISTEN" not in env_of(rendered[case])
    # Readiness and startup ask about the session service; liveness about the
    # server as a whole (the session service's status follows the store, and a
    # restart cannot mend a store outage).
    expected = {"startupProbe": HEALTH_SERVICE, "readinessProbe": HEALTH_SERVICE, "livenessProbe": ""}
    for probe, service in expected.items():
        assert not {"httpGet", "exec", "tcpSocket"} & set(main[probe]), probe
        assert main[probe]["grpc"] == {"port": grpc_port, "service": service}, probe


@pytest.mark.parametrize("case", CASES)
def test_termination_waits_for_prestop_and_drain(rendered, case):
    docs = rendered[case]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sleep = container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 1
    drain = seconds(env_value(docs, "SESSIOND_SHUTDOWN_GRACE"))
    assert pod["terminationGracePeriodSeconds"] > sleep + drain


def test_default_termination_timing(rendered):
    docs = rendered["default"]
    assert container(docs)["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert env_value(docs, "SESSIOND_SHUTDOWN_GRACE") == "10s"
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 20


def test_default_environment(rendered):
    docs = rendered["default"]
    assert env_value(docs, "SESSIOND_LISTEN") == "0.0.0.0:50051"
    assert env_value(docs, "SESSIOND_METRICS_LISTEN") == "0.0.0.0:9090"
    assert env_value(docs, "SESSIOND_STORE") == "embedded"
    assert env_value(docs, "SESSIOND_DB_PATH") == "/data/sessiond.redb"
    assert env_value(docs, "SESSIOND_LOG_FORMAT") == "json"
    # Settings left null are not passed: the server's defaults apply.
    assert "SESSIOND_IDLE_TTL" not in env_of(docs)
    assert "SESSIOND_REDIS_URL" not in env_of(docs)


def server_env_vars() -> set[str]:
    """Every SESSIOND_* variable the server reads (src/config.rs), plus the metrics listener."""
    source = (ROOT / "src" / "config.rs").read_text()
    names = set(re.findall(r'env\s*=\s*"(SESSIOND_[A-Z0-9_]+)"', source))
    assert len(names) >= 20, f"src/config.rs looks unlike the config: found {sorted(names)}"
    return names | {"SESSIOND_METRICS_LISTEN"}


def test_every_server_setting_is_reachable_from_values(rendered):
    reachable = set()
    for docs in rendered.values():
        reachable |= set(env_of(docs))
    missing = server_env_vars() - reachable
    assert not missing, f"settings with no chart value: {sorted(missing)} (map them in sessiond.env)"


def test_config_block_becomes_env(rendered):
    docs = rendered["production"]
    expected = {
        "SESSIOND_LOG_LEVEL": "sessiond=info,warn",
        "SESSIOND_REDIS_POOL_SIZE": "64",
        "SESSIOND_REDIS_KEY_PREFIX": "prod",
        "SESSIOND_REDIS_TIMEOUT": "1s",
        "SESSIOND_REDIS_DURABILITY": "replicas:1",
        "SESSIOND_REDIS_DURABILITY_TIMEOUT": "500ms",
        "SESSIOND_REDIS_CHECK_INTERVAL": "30s",
        "SESSIOND_CACHE_MAX_BYTES": "1GiB",
        "SESSIOND_CACHE_MAX_AGE": "15s",
        "SESSIOND_LEASE_DEFAULT": "15s",
        "SESSIOND_LEASE_MIN": "250ms",
        "SESSIOND_LEASE_MAX": "2m",
        "SESSIOND_WAIT_MAX": "30s",
        "SESSIOND_IDLE_TTL": "72h",
        "SESSIOND_MAX_FIELDS": "512",
        "SESSIOND_MAX_FIELD_BYTES": "128KiB",
        # A large integer stays an integer, never 4.194304e+06.
        "SESSIOND_MAX_SESSION_BYTES": "4194304",
        "SESSIOND_MAX_CONCURRENT_CALLS": "8192",
        "SESSIOND_MAX_CALLS_PER_NAMESPACE": "2048",
        "SESSIOND_MAX_WAITERS_PER_NAMESPACE": "1024",
        "SESSIOND_MAX_WAITERS_PER_SESSION": "64",
        "SESSIOND_MAX_WATCHERS": "20000",
        "SESSIOND_MAX_WATCHERS_PER_NAMESPACE": "5000",
        "SESSIOND_MAX_SESSIONS_PER_NAMESPACE": "1000000",
        "SESSIOND_MAX_BYTES_PER_NAMESPACE": "8GiB",
        "SESSIOND_SHUTDOWN_GRACE": "25s",
        "SESSIOND_STORE": "redis",
    }
    for name, value in expected.items():
        assert env_value(docs, name) == value, name
    # extraEnv comes after the chart's own variables.
    names = [e["name"] for e in container(docs)["env"]]
    assert names[-1] == "RUST_BACKTRACE"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"] == 10


def secret_ref(docs: list[dict], name: str) -> dict:
    entry = env_of(docs)[name]
    assert "value" not in entry, f"{name} is given in plain text"
    return entry["valueFrom"]["secretKeyRef"]


def test_redis_url_and_password_from_existing_secret(rendered):
    docs = rendered["redis-existing-secret"]
    assert env_value(docs, "SESSIOND_STORE") == "redis"
    assert secret_ref(docs, "SESSIOND_REDIS_URL") == {"name": "sessiond-redis", "key": "redis-url"}
    assert secret_ref(docs, "SESSIOND_REDIS_PASSWORD") == {"name": "sessiond-redis", "key": "redis-password"}
    assert "SESSIOND_DB_PATH" not in env_of(docs)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_plain_redis_url_with_secret_password(rendered):
    docs = rendered["all-optional"]
    assert env_value(docs, "SESSIOND_REDIS_URL") == "redis://redis-master.data.svc:6379/0"
    assert secret_ref(docs, "SESSIOND_REDIS_PASSWORD") == {"name": "redis-auth", "key": "password"}


def test_redis_behind_sentinel(rendered):
    docs = rendered["redis-sentinel"]
    assert env_value(docs, "SESSIOND_REDIS_SENTINEL") == ",".join(
        f"redis-sentinel-{i}.redis-sentinel.data.svc:26379" for i in range(3)
    )
    assert env_value(docs, "SESSIOND_REDIS_SENTINEL_MASTER") == "sessions"
    assert secret_ref(docs, "SESSIOND_REDIS_PASSWORD") == {"name": "sessiond-redis", "key": "redis-password"}
    assert "SESSIOND_REDIS_URL" not in env_of(docs)
    assert "SESSIOND_REDIS_CLUSTER" not in env_of(docs)


def test_redis_cluster(rendered):
    docs = rendered["redis-cluster"]
    assert env_value(docs, "SESSIOND_REDIS_CLUSTER") == (
        "redis-cluster-0.redis-cluster-headless.data.svc:6379,redis-cluster-1.redis-cluster-headless.data.svc:6379"
    )
    assert secret_ref(docs, "SESSIOND_REDIS_PASSWORD") == {"name": "sessiond-redis", "key": "redis-password"}
    assert "SESSIOND_REDIS_URL" not in env_of(docs)
    assert "SESSIOND_REDIS_SENTINEL" not in env_of(docs)
    assert one(docs, "Deployment")["spec"]["replicas"] == 4


@pytest.mark.parametrize("case", CASES)
def test_claim_only_for_embedded_store(rendered, case):
    docs = rendered[case]
    embedded = env_value(docs, "SESSIOND_STORE") == "embedded"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    claims = by_kind(docs, "PersistentVolumeClaim")
    if not embedded:
        assert claims == []
        assert "data" not in volumes and "data" not in mounts
        return
    assert mounts["data"] == "/data"
    assert env_value(docs, "SESSIOND_DB_PATH") == "/data/sessiond.redb"
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    if case == "embedded-ephemeral":
        assert claims == []
        assert volumes["data"] == {"name": "data", "emptyDir": {}}
    else:
        (claim,) = claims
        assert claim["metadata"]["name"] == f"{FULLNAME}-data"
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": f"{FULLNAME}-data"}


def test_claim_settings(rendered):
    (claim,) = by_kind(rendered["embedded-persistence"], "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["backup.example.com/schedule"] == "daily"
    (default_claim,) = by_kind(rendered["default"], "PersistentVolumeClaim")
    assert "storageClassName" not in default_claim["spec"]


def test_existing_claim_is_used_not_created(chart):
    docs = manifests(render(chart, {**INSECURE, "persistence": {"existingClaim": "sessions-pv"}}))
    assert by_kind(docs, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "sessions-pv"}


@pytest.mark.parametrize("case", CASES)
def test_hpa_only_when_enabled(rendered, case):
    docs = rendered[case]
    enabled = bool(load_values(case).get("autoscaling", {}).get("enabled"))
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    deployment = one(docs, "Deployment")
    if not enabled:
        assert hpas == []
        assert deployment["spec"]["replicas"] == load_values(case).get("replicaCount", 1)
        return
    (hpa,) = hpas
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    # The HPA owns the replica count: the Deployment must not fight it.
    assert "replicas" not in deployment["spec"]
    assert env_value(docs, "SESSIOND_STORE") == "redis"


def test_production_hpa_and_spread(rendered):
    docs = rendered["production"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    main = container(docs)
    assert main["resources"]["requests"] == {"cpu": "1", "memory": "1536Mi"}
    assert main["image"] == "registry.example.com/platform/sessiond:0.1.0"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert spread["labelSelector"] == {"matchLabels": selector}
    assert pod["priorityClassName"] == "high-priority"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_optional_resources_off_by_default(rendered):
    assert "SESSIOND_AUTH_TOKENS_FILE" not in env_of(rendered["default"])
    kinds = {doc["kind"] for doc in rendered["default"]}
    # The NetworkPolicy is on by default: only the listeners' ports are open.
    assert kinds == {"Deployment", "Service", "ServiceAccount", "PersistentVolumeClaim", "Pod", "NetworkPolicy"}
    policy = one(rendered["default"], "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [
        [{"port": "grpc", "protocol": "TCP"}],
        [{"port": "metrics", "protocol": "TCP"}],
    ]


def test_the_network_policy_can_be_turned_off(chart):
    docs = manifests(render(chart, {**INSECURE, "networkPolicy": {"enabled": False}}))
    assert not by_kind(docs, "NetworkPolicy")


def test_with_tls_the_network_policy_opens_the_health_port(rendered):
    policy = one(rendered["tls"], "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["grpc", "health", "metrics"]


def test_all_optional_resources(rendered):
    docs = rendered["all-optional"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]

    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")

    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert {"podSelector": {"matchLabels": {f"{FULLNAME}-client": "true"}}} in grpc_rule["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "chatbots"}}} in grpc_rule["from"]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert sorted(egress_ports) == [53, 53, 6379]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}

    # Authentication: the tokens file from the Secret, read-only, named in the env.
    assert env_value(docs, "SESSIOND_AUTH_TOKENS_FILE") == "/etc/sessiond/auth/tokens"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (auth_volume,) = [v for v in pod["volumes"] if v["name"] == "auth"]
    assert auth_volume["secret"] == {
        "secretName": "sessiond-tokens",
        "defaultMode": 0o400,
        "items": [{"key": "tokens", "path": "tokens"}],
    }
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "auth", "mountPath": "/etc/sessiond/auth", "readOnly": True} in mounts

    headless = one(docs, "Service", f"{FULLNAME}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 2


@pytest.mark.parametrize("case", CASES)
def test_service_ports(rendered, case):
    docs = rendered[case]
    service = one(docs, "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["targetPort"] == "grpc"
    metrics_on = load_values(case).get("metrics", {}).get("enabled", True)
    if metrics_on:
        assert ports["metrics"]["port"] == 9090
        assert env_value(docs, "SESSIOND_METRICS_LISTEN") == "0.0.0.0:9090"
    else:
        assert "metrics" not in ports
        assert env_value(docs, "SESSIOND_METRICS_LISTEN") == ""
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("case", CASES)
def test_standard_labels(rendered, case):
    for doc in rendered[case]:
        labels = doc["metadata"]["labels"]
        for key in ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{doc['kind']} lacks {key}"
    deployment = one(rendered[case], "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_helm_test_pod_checks_health_and_reflection(rendered):
    docs = rendered["default"]
    pod = one(docs, "Pod", f"{FULLNAME}-test-grpc")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (probe,) = pod["spec"]["containers"]
    assert probe["image"].startswith("fullstorydev/grpcurl:")
    script = " ".join(probe["command"])
    assert "grpc.health.v1.Health/Check" in script
    assert HEALTH_SERVICE in script
    assert "sessiond.v1.AdminService/GetStats" in script
    assert '"SERVING"' in script
    assert {"name": "TARGET", "value": f"{FULLNAME}:50051"} in probe["env"]
    assert probe["securityContext"]["readOnlyRootFilesystem"] is True
    # Let through the NetworkPolicy, but never selected by the Service.
    assert pod["metadata"]["labels"][f"{FULLNAME}-client"] == "true"
    selector = one(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


def test_notes_show_grpcurl_getstats(chart):
    notes = render(chart, INSECURE)["sessiond/templates/NOTES.txt"]
    assert f"kubectl --namespace {NAMESPACE} port-forward svc/{FULLNAME} 50051:50051" in notes
    assert "grpcurl -plaintext localhost:50051 sessiond.v1.AdminService/GetStats" in notes
    ephemeral = render(chart, load_values("embedded-ephemeral"))["sessiond/templates/NOTES.txt"]
    assert "LOST" in ephemeral


# --- dashboard and alerts ----------------------------------------------------


def dashboard_map(docs: list[dict]) -> dict:
    (config_map,) = [doc for doc in by_kind(docs, "ConfigMap") if doc["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    return config_map


def alert_rules(docs: list[dict]) -> dict[str, dict]:
    """The rules of the PrometheusRule, by alert name (a duplicate name fails)."""
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), f"duplicate rule groups: {names}"
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = [rule["alert"] for rule in rules]
    assert len(alerts) == len(set(alerts)), f"duplicate alerts: {alerts}"
    return {rule["alert"]: rule for rule in rules}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@pytest.mark.parametrize("case", CASES)
def test_dashboard_and_rules_only_when_enabled(rendered, case):
    values = load_values(case)
    docs = rendered[case]
    dashboards = [doc for doc in by_kind(docs, "ConfigMap") if doc["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == int(values.get("grafanaDashboard", {}).get("enabled", False))
    assert len(by_kind(docs, "PrometheusRule")) == int(values.get("prometheusRule", {}).get("enabled", False))


def test_dashboard_configmap_for_the_grafana_sidecar(chart, rendered):
    # Defaults: the grafana chart's sidecar label, no folder.
    config_map = dashboard_map(manifests(render(chart, {**INSECURE, "grafanaDashboard": {"enabled": True}})))
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in config_map["metadata"]
    # The file verbatim: Grafana's own format, its {{legend}} templates untouched by Helm.
    assert list(config_map["data"]) == ["sessiond.json"]
    assert config_map["data"]["sessiond.json"] == DASHBOARD.read_text().rstrip("\n")
    assert "{{grpc_method}}" in config_map["data"]["sessiond.json"]
    # Label, value, folder annotation and namespace from values.
    config_map = dashboard_map(rendered["all-optional"])
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana.example.com/dashboard"] == "sessiond"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["annotations"] == {"k8s-sidecar-target-directory": "Chat platform"}
    config_map = dashboard_map(
        manifests(render(chart, {**INSECURE, "grafanaDashboard": {"enabled": True, "folder": "x", "folderAnnotation": "grafana_folder", "annotations": {"a": "b"}}}))
    )
    assert config_map["metadata"]["annotations"] == {"a": "b", "grafana_folder": "x"}


def test_dashboard_panels_query_the_datasource_variable(rendered):
    dashboard = json.loads(dashboard_map(rendered["all-optional"])["data"]["sessiond.json"])
    assert dashboard["uid"] == "sessiond"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job", "instance"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
    queried = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(queried) >= 12
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in queried:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"panel {title!r} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {title!r} has an empty query"
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], title
            # Every query keeps to the namespace and job picked in the variables.
            for selector in ('namespace="$namespace"', 'job="$job"', 'instance=~"$instance"'):
                assert selector in target["expr"], f"{title}: {target['expr']} lacks {selector}"
            if "rate(" in target["expr"]:
                assert "[$__rate_interval]" in target["expr"], title
    # No data source is named outright anywhere: only the variable (and Grafana's own annotations).
    text = json.dumps(dashboard)
    uids = set(re.findall(r'"datasource": \{"type": "[a-z]+", "uid": "([^"]+)"\}', text))
    assert uids == {"${datasource}", "-- Grafana --"}


def test_dashboard_has_the_panels_an_operator_looks_at_first():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for needed in (
        "grpc_server_started_total",
        "sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total",
        "histogram_quantile(0.5, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket",
        "histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket",
        "sessiond_cache_hits_total",
        "sessiond_cache_misses_total",
        "sessiond_cache_feed_losses_total",
        "sessiond_cache_bypasses_total",
        "sessiond_lock_wait_seconds_bucket",
        "sessiond_lock_waiting",
        "sessiond_lock_lease_expiries_total",
        "sessiond_store_errors_total",
        "sessiond_store_up",
        "sessiond_store_pool_connections",
        "sessiond_store_pool_idle",
    ):
        assert needed in exprs, f"no panel queries {needed}"


def test_every_alert_has_its_fields(rendered):
    monitor_labels = one(rendered["all-optional"], "ServiceMonitor")["metadata"]["labels"]
    rule = one(rendered["all-optional"], "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    # The label the Prometheus operator's ruleSelector matches, as for the ServiceMonitor.
    assert rule["metadata"]["labels"]["release"] == monitor_labels["release"] == "kube-prometheus-stack"
    alerts = alert_rules(rendered["all-optional"])
    assert set(alerts) == ALERTS - {"SessiondLeaseExpiries"}, "leaseExpiries is disabled in all-optional.yaml"
    for name, alert in alerts.items():
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}, name
        assert re.fullmatch(r"[1-9]\d*[smh]", alert["for"]), f"{name}: for {alert['for']!r}"
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert alert["labels"]["team"] == "chat", name
        assert set(alert["annotations"]) == {"summary", "description"}, name
        summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
        assert "{{ $labels.job }}" in summary, name
        assert len(description) > 150, f"{name}: the description says what to do"
        # Only Prometheus's own templates are left after rendering.
        assert "{{`" not in summary + description and "`}}" not in summary + description, name
        assert "{{" not in alert["expr"], name
        assert 'namespace="sessiond",job="rel-sessiond"' in alert["expr"], name


def test_alert_thresholds_come_from_values(chart, rendered):
    alerts = alert_rules(rendered["all-optional"])
    assert alerts["SessiondSlowCalls"]["expr"].endswith("> 0.1")
    assert alerts["SessiondSlowCalls"]["labels"]["severity"] == "critical"
    assert "above 0.1s" in alerts["SessiondSlowCalls"]["annotations"]["description"]
    values = {
        **INSECURE,
        "prometheusRule": {
            "enabled": True,
            "selector": 'job="sessiond"',
            "rateWindow": "10m",
            "alerts": {
                "internalErrors": {"ratio": 0.002, "for": "15m"},
                "unavailable": {"enabled": False},
                "storeDown": {"for": "30s", "severity": "page"},
            },
        }
    }
    alerts = alert_rules(manifests(render(chart, values)))
    assert "SessiondUnavailable" not in alerts
    errors = alerts["SessiondInternalErrors"]
    assert errors["expr"].endswith("> 0.002")
    assert errors["for"] == "15m"
    assert "More than 0.2% of" in errors["annotations"]["description"]
    assert 'grpc_code=~"Internal|Unknown"' in errors["expr"]
    assert alerts["SessiondStoreDown"]["for"] == "30s"
    assert alerts["SessiondStoreDown"]["labels"] == {"severity": "page"}
    for name, alert in alerts.items():
        assert '{job="sessiond"' in alert["expr"], name
        assert "namespace=" not in alert["expr"], name
        # The two gauge alerts read no window.
        gauge = name in ("SessiondStoreDown", "SessiondCacheFeedDown")
        assert "[5m]" not in alert["expr"] and ("[10m]" in alert["expr"] or gauge), name


def test_alerts_tell_errors_unavailable_and_shedding_apart(rendered):
    alerts = alert_rules(rendered["all-optional"])
    codes = {name: re.findall(r'grpc_code=~?"([^"]+)"', alert["expr"]) for name, alert in alerts.items()}
    assert codes["SessiondInternalErrors"] == ["Internal|Unknown"]
    assert codes["SessiondUnavailable"] == ["Unavailable"]
    assert codes["SessiondOverloaded"] == ["ResourceExhausted"]
    # LockSession waits for locks by design: its latency is not an alert.
    assert 'grpc_method!="LockSession"' in alerts["SessiondSlowCalls"]["expr"]
    assert "histogram_quantile(0.99," in alerts["SessiondSlowCalls"]["expr"]


# --- refusals ----------------------------------------------------------------

EMBEDDED_REPLICAS = "store: embedded keeps sessions in a file that one pod owns, so replicaCount must be 1 (got 3)"
EMBEDDED_HPA = "store: embedded keeps sessions in a file that one pod owns, so autoscaling.enabled must be false"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"store": "embedded", "replicaCount": 3}, "at '/replicaCount': maximum: got 3, want 1"),
        ({"store": "embedded", "autoscaling": {"enabled": True}}, "at '/autoscaling/enabled': value must be false"),
        ({"store": "memcached"}, "at '/store': value must be one of 'embedded', 'redis'"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"config": {"idleTtl": "a day"}}, "at '/config/idleTtl': 'a day' does not match pattern"),
        ({"prometheusRule": {"alerts": {"overload": {"ratio": 5}}}}, "at '/prometheusRule/alerts/overload/ratio': maximum: got 5, want 1"),
        ({"prometheusRule": {"alerts": {"storeDown": {"for": "1 minute"}}}}, "at '/prometheusRule/alerts/storeDown/for': '1 minute' does not match pattern"),
        ({"prometheusRule": {"selector": '{job="x"}'}}, "at '/prometheusRule/selector': '{job=\"x\"}' does not match pattern"),
        ({"prometheusRule": {"alerts": {"latency": {"p99": 1}}}}, "additional properties 'p99' not allowed"),
        ({"grafanaDashboard": {"label": ""}}, "at '/grafanaDashboard/label': '' does not match pattern"),
        ({"config": {"redisDurability": "replicas:0"}}, "at '/config/redisDurability': 'replicas:0' does not match pattern"),
    ],
    ids=[
        "replicas-not-integer", "embedded-3-replicas", "embedded-autoscaling", "unknown-store", "unknown-key", "bad-duration",
        "alert-ratio-above-1", "alert-for-not-duration", "selector-with-braces", "unknown-alert-key", "empty-dashboard-label",
        "bad-durability",
    ],
)
def test_schema_refuses(chart, values, message):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, values)
    assert message in str(refused.value)
    # `helm lint` reports the same.
    assert any(message in error for error in helm.lint(CHART, values)["errors"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": "embedded", "replicaCount": 3}, EMBEDDED_REPLICAS),
        ({"store": "embedded", "autoscaling": {"enabled": True}}, EMBEDDED_HPA),
    ],
    ids=["embedded-3-replicas", "embedded-autoscaling"],
)
def test_templates_refuse_embedded_multi_replica_without_the_schema(chart_without_schema, values, message):
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart_without_schema, values)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": "redis"}, "store: redis needs a Redis URL: set redis.url, or redis.existingSecret and redis.urlKey"),
        (
            {"store": "redis", "redis": {"url": "redis://r:6379", "existingSecret": "s", "urlKey": "url"}},
            "redis.url and redis.urlKey are both set",
        ),
        ({"store": "redis", "redis": {"url": "redis://r:6379", "passwordKey": "pw"}}, "redis.existingSecret, which is empty"),
        (
            {"terminationGracePeriodSeconds": 12},
            "terminationGracePeriodSeconds (12) must exceed lifecycle.preStopSleepSeconds + config.shutdownGraceSeconds (15)",
        ),
        ({"metrics": {"enabled": False}, "serviceMonitor": {"enabled": True}}, "serviceMonitor.enabled needs metrics.enabled"),
        ({"strategy": {"type": "RollingUpdate"}}, "strategy cannot be set with store: embedded"),
        ({"metrics": {"enabled": False}, "prometheusRule": {"enabled": True}}, "prometheusRule.enabled needs metrics.enabled"),
        ({"metrics": {"enabled": False}, "grafanaDashboard": {"enabled": True}}, "grafanaDashboard.enabled needs metrics.enabled"),
        ({"tls": {"clientCa": {"existingSecret": "ca"}}}, "tls.clientCa.existingSecret turns mTLS on, which needs TLS"),
        ({"metrics": {"tls": True}}, "metrics.tls serves /metrics with the gRPC port's certificate, which needs TLS"),
        (
            {"store": "redis", "redis": {"topology": "sentinel", "sentinel": {"addresses": ["s:26379"]}}},
            "redis.topology: sentinel needs redis.sentinel.addresses",
        ),
        (
            {
                "store": "redis",
                "redis": {
                    "topology": "sentinel",
                    "url": "redis://r:6379",
                    "sentinel": {"addresses": ["s:26379"], "masterName": "m"},
                },
            },
            "redis.topology: sentinel finds the master through the sentinels",
        ),
        ({"store": "redis", "redis": {"topology": "cluster"}}, "redis.topology: cluster needs redis.cluster.nodes"),
        (
            {"store": "redis", "redis": {"topology": "cluster", "url": "redis://r:6379", "cluster": {"nodes": ["n:6379"]}}},
            "redis.topology: cluster finds its nodes through redis.cluster.nodes",
        ),
    ],
    ids=[
        "redis-without-url", "url-twice", "key-without-secret", "grace-too-short", "monitor-without-metrics", "embedded-rolling",
        "rules-without-metrics", "dashboard-without-metrics", "mtls-without-tls", "metrics-tls-without-tls",
        "sentinel-without-name", "sentinel-with-url", "cluster-without-nodes", "cluster-with-url",
    ],
)
def test_templates_refuse(chart, values, message):
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, {**INSECURE, **values})
    assert message in str(refused.value)


def test_tls_and_mtls_from_secrets_mounted_read_only_0400(rendered):
    docs = rendered["tls"]
    assert env_value(docs, "SESSIOND_TLS_CERT") == "/etc/sessiond/tls/tls.crt"
    assert env_value(docs, "SESSIOND_TLS_KEY") == "/etc/sessiond/tls/tls.key"
    assert env_value(docs, "SESSIOND_TLS_CLIENT_CA") == "/etc/sessiond/client-ca/ca.crt"
    assert env_value(docs, "SESSIOND_RELOAD_INTERVAL") == "10s"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"] == {
        "secretName": "sessiond-tls",
        "defaultMode": 0o400,
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "private.key", "path": "tls.key"}],
    }
    assert volumes["client-ca"]["secret"] == {
        "secretName": "chatbots-ca",
        "defaultMode": 0o400,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    # /metrics over TLS too, scraped over https.
    assert env_value(docs, "SESSIOND_METRICS_TLS") == "true"
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "sessiond-tls", "key": "ca.crt"}}, "serverName": FULLNAME}
    mounts = container(docs)["volumeMounts"]
    assert {"name": "tls", "mountPath": "/etc/sessiond/tls", "readOnly": True} in mounts
    assert {"name": "client-ca", "mountPath": "/etc/sessiond/client-ca", "readOnly": True} in mounts


@pytest.mark.parametrize("case", [c for c in CASES if c != "tls"])
def test_tls_is_off_unless_a_secret_is_given(rendered, case):
    env = env_of(rendered[case])
    assert not {"SESSIOND_TLS_CERT", "SESSIOND_TLS_KEY", "SESSIOND_TLS_CLIENT_CA", "SESSIOND_METRICS_TLS"} & set(env)
    for monitor in by_kind(rendered[case], "ServiceMonitor"):
        assert [e["scheme"] for e in monitor["spec"]["endpoints"]] == ["http"]
    names = {v["name"] for v in one(rendered[case], "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert not {"tls", "client-ca"} & names


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_images_are_referenced_by_digest_when_one_is_given(chart):
    docs = manifests(render(chart, {
        **INSECURE,
        "image": {"repository": "registry.example.com/sessiond", "tag": "0.1.0", "digest": DIGEST},
        "tests": {"image": {"repository": "fullstorydev/grpcurl", "digest": DIGEST}},
    }))
    assert container(docs)["image"] == f"registry.example.com/sessiond@{DIGEST}"
    (probe,) = one(docs, "Pod", f"{FULLNAME}-test-grpc")["spec"]["containers"]
    assert probe["image"] == f"fullstorydev/grpcurl@{DIGEST}"


@pytest.mark.parametrize("digest", ["sha256:abc", "latest", "sha256:" + "G" * 64])
def test_schema_refuses_a_malformed_digest(chart, digest):
    with pytest.raises(helm.HelmValuesError):
        render(chart, {"image": {"digest": digest}})


@pytest.mark.parametrize(
    "url",
    ["redis://:hunter2@redis:6379/0", "rediss://sessiond:hunter2@redis:6380", "redis://u:@redis"],
)
def test_a_redis_password_in_the_url_is_refused(chart, url):
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, {"store": "redis", "redis": {"url": url}})
    assert "redis.url carries a password" in str(refused.value)


def test_a_redis_user_without_password_may_sit_in_the_url(chart):
    values = {**INSECURE, "store": "redis", "redis": {"url": "redis://sessiond@redis:6379/0", "existingSecret": "r", "passwordKey": "pw"}}
    docs = manifests(render(chart, values))
    assert env_value(docs, "SESSIOND_REDIS_URL") == "redis://sessiond@redis:6379/0"
    assert secret_ref(docs, "SESSIOND_REDIS_PASSWORD") == {"name": "r", "key": "pw"}


def test_no_auth_and_no_tls_needs_insecure(chart):
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, {})
    assert "set insecure: true to deploy without them knowingly" in str(refused.value)
    # Either protection alone is enough.
    manifests(render(chart, {"auth": {"existingSecret": "tokens"}}))
    manifests(render(chart, {"tls": {"existingSecret": "tls"}}))
