# SPDX-License-Identifier: Apache-2.0
"""The Helm chart in helm/shoal, rendered and linted by the real helm.

No cluster is needed: `helm lint` and `helm template` run offline, and the
chart's values.schema.json is checked by helm on every render. Every object
rendered from the default values, values-dev.yaml and a full-featured values
file is decoded strictly by tests/helm-validate (client-go's deserializer:
unknown fields, wrong types, unknown kinds are errors), and the wiring
between objects is checked: Service ports, probes, the config file (through
`shoal --check-config`), the Secrets it names, the grace period.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import SHOAL_BIN

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
CHART = os.path.join(ROOT, "helm/shoal")
DASHBOARD = os.path.join(CHART, "dashboards/shoal.json")
CACHE = os.environ.get("SHOAL_CACHE", os.path.expanduser("~/.cache/shoal"))


def find_helm():
    cached = os.path.join(CACHE, "helm/bin/helm")
    if os.access(cached, os.X_OK):
        return cached
    return shutil.which("helm")


HELM = find_helm()
VALIDATOR = os.path.join(CACHE, "helm-validate/bin/helm-validate")
DEV_VALUES = os.path.join(CHART, "values-dev.yaml")


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory):
    # tests/run installs helm, so a missing one is a broken setup, not a skip.
    if HELM is None:
        pytest.fail("helm not found in %s/helm/bin or on PATH; ./tests/run installs it" % CACHE)
    # Keep helm's own config, cache and repositories out of the user's home.
    home = tmp_path_factory.mktemp("helm-home")
    return {**os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def helm(env, *args, check=True):
    r = subprocess.run([HELM, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        pytest.fail("helm %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def render(env, *args, chart=CHART):
    out = helm(env, "template", "shoal", chart, "--namespace", "obs", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def configmaps(docs):
    """The dashboard ConfigMaps (the chart's config ConfigMap is another component)."""
    return [d for d in docs if d.get("kind") == "ConfigMap"
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"]


def dashboard_bytes():
    with open(DASHBOARD, "rb") as f:
        return f.read()


def test_lint_strict(helm_env):
    helm(helm_env, "lint", "--strict", CHART)
    helm(helm_env, "lint", "--strict", CHART, "--set", "grafanaDashboard.enabled=true")


def test_app_version_is_the_node_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        version = re.search(r"project\(shoal VERSION ([0-9.]+)", f.read()).group(1)
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    assert chart["appVersion"] == version
    assert chart["apiVersion"] == "v2" and chart["name"] == "shoal" and chart["type"] == "application"


def test_defaults_render_no_dashboard(helm_env):
    assert configmaps(render(helm_env)) == []


def check_dashboard_configmap(cm, namespace):
    meta = cm["metadata"]
    assert meta["namespace"] == namespace
    assert meta["name"] == "shoal-dashboard"
    labels = meta["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert labels["app.kubernetes.io/name"] == "shoal"
    assert labels["app.kubernetes.io/instance"] == "shoal"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert list(cm["data"]) == ["shoal.json"]
    text = cm["data"]["shoal.json"]
    assert json.loads(text)["uid"] == "shoal-overview"
    assert text.encode() == dashboard_bytes()


def test_enabled_renders_the_dashboard(helm_env):
    cms = configmaps(render(helm_env, "--set", "grafanaDashboard.enabled=true"))
    assert len(cms) == 1
    check_dashboard_configmap(cms[0], "obs")
    assert "annotations" not in cms[0]["metadata"]


def chart_version():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        return yaml.safe_load(f)["version"]


def test_packaged_chart_carries_the_dashboard(helm_env, tmp_path):
    # What `helm package` ships (after .helmignore) is what users install.
    helm(helm_env, "package", CHART, "--destination", str(tmp_path))
    pkg = tmp_path / ("shoal-%s.tgz" % chart_version())
    cms = configmaps(render(helm_env, "--set", "grafanaDashboard.enabled=true", chart=str(pkg)))
    assert len(cms) == 1
    check_dashboard_configmap(cms[0], "obs")


def test_custom_labels_namespace_annotations(helm_env):
    cms = configmaps(render(helm_env,
                            "--set", "grafanaDashboard.enabled=true",
                            "--set", "grafanaDashboard.namespace=monitoring",
                            "--set", "grafanaDashboard.labels.grafana_dashboard=null",
                            "--set", "grafanaDashboard.labels.dashboards=shoal",
                            "--set", "grafanaDashboard.labels.tier=2",
                            "--set", "grafanaDashboard.annotations.grafana_folder=Shoal MQTT",
                            "--set", "fullnameOverride=mqtt"))
    assert len(cms) == 1
    meta = cms[0]["metadata"]
    assert meta["name"] == "mqtt-dashboard"
    assert meta["namespace"] == "monitoring"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["dashboards"] == "shoal"
    # --set makes 2 a number; a label value must be a string.
    assert meta["labels"]["tier"] == "2"
    assert meta["annotations"] == {"grafana_folder": "Shoal MQTT"}
    assert cms[0]["data"]["shoal.json"].encode() == dashboard_bytes()


@pytest.mark.parametrize("setting,complaint", [
    ("grafanaDashboard.enabeld=true", "'enabeld' not allowed"),
    ("grafanaDashbaord.enabled=true", "'grafanaDashbaord' not allowed"),
    ("grafanaDashboard.enabled=yes", "/grafanaDashboard/enabled"),
    ("grafanaDashboard.namespace=Monitoring_NS", "/grafanaDashboard/namespace"),
    ("grafanaDashboard.labels.grafana_dashboard=not valid", "/grafanaDashboard/labels/grafana_dashboard"),
    ("service.type=Ingress", "/service/type"),
    ("replicaCount=-1", "/replicaCount"),
    ("replicaCount=three", "/replicaCount"),
    ("config.logLevel=loud", "/config/logLevel"),
    ("config.workers=65", "/config/workers"),
    ("config.clusterLease=600001", "/config/clusterLease"),
    ("config.clusterLease=-1", "/config/clusterLease"),
    ("config.extra.Max_Inflight=3", "Max_Inflight"),
    ("kafka.acks=2", "/kafka/acks"),
    ("kafka.replicationFactor=0", "/kafka/replicationFactor"),
    ("kafka.brokers=kafka", "/kafka/brokers"),
    ("tls.minVersion=1.1", "/tls/minVersion"),
    ("ports.mqtt=70000", "/ports/mqtt"),
    ("probes.liveness.periodSeconds=0", "/probes/liveness/periodSeconds"),
    ("drain.timeoutSeconds=0", "/drain/timeoutSeconds"),
    ("drain.timeoutSeconds=3601", "/drain/timeoutSeconds"),
    ("drain.rate=0", "/drain/rate"),
    ("websocket.path=mqtt", "/websocket/path"),
    ("podDisruptionBudget.maxUnavailable=half", "/podDisruptionBudget/maxUnavailable"),
    ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
    ("image.digest=latest", "/image/digest"),
    ("redis.tls.enabeld=true", "'enabeld' not allowed"),
    ("kafka.sasl.mechanism=GSSAPI", "/kafka/sasl/mechanism"),
    ("kafka.tls.enabeld=true", "'enabeld' not allowed"),
    ("proxyProtocol.mqtt=v3", "/proxyProtocol/mqtt"),
    ("proxyProtocol.trusted={10.0.0.0/8 x}", "/proxyProtocol/trusted"),
])
def test_schema_rejects_bad_values(helm_env, setting, complaint):
    r = helm(helm_env, "template", "shoal", CHART, "--set", setting, check=False)
    assert r.returncode != 0, "helm accepted --set %s:\n%s" % (setting, r.stdout)
    assert "schema" in r.stderr and complaint in r.stderr, r.stderr


def test_lint_rejects_a_misspelt_value(helm_env):
    r = helm(helm_env, "lint", "--strict", CHART, "--set", "grafanaDashboard.enabeld=true", check=False)
    assert r.returncode != 0 and "'enabeld' not allowed" in r.stdout + r.stderr, r.stdout + r.stderr



# --- the broker's objects ------------------------------------------------------

FULL_VALUES = os.path.join(CHART, "ci/full-values.yaml")
VALUE_SETS = {"default": [], "dev": ["-f", DEV_VALUES], "full": ["-f", FULL_VALUES]}


def load_values(name):
    """The effective values of one value set (values.yaml, then the file's)."""
    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out
    with open(os.path.join(CHART, "values.yaml")) as f:
        vals = yaml.safe_load(f)
    extra = {"default": None, "dev": DEV_VALUES, "full": FULL_VALUES}[name]
    if extra:
        with open(extra) as f:
            vals = merge(vals, yaml.safe_load(f))
    return vals


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, "%d %s %s" % (len(found), kind, name)
    return found[0]


def broker(docs):
    deps = [d for d in by_kind(docs, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "broker"]
    assert len(deps) == 1
    return deps[0]


def shoal_container(dep):
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "shoal"]
    return c


def config_of(docs):
    cm = one(docs, "ConfigMap", "shoal")
    text = cm["data"]["shoal.conf"]
    conf = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.strip().partition(" ")
            assert k not in conf, "key %s twice" % k
            conf[k] = v.strip()
    return text, conf


@pytest.fixture(scope="module")
def validator():
    # tests/run builds it, so a missing one is a broken setup, not a skip.
    if not os.access(VALIDATOR, os.X_OK):
        pytest.fail("%s missing; ./tests/run builds it from tests/helm-validate" % VALIDATOR)
    return VALIDATOR


@pytest.fixture(scope="module")
def rendered(helm_env):
    return {name: render(helm_env, *args) for name, args in VALUE_SETS.items()}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_strict_value_sets(helm_env, name):
    r = helm(helm_env, "lint", "--strict", CHART, *VALUE_SETS[name])
    # A template fail() inside lint shows as an INFO line while lint passes.
    assert "Fail:" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_validates_strictly(helm_env, validator, name):
    out = helm(helm_env, "template", "shoal", CHART, "--namespace", "obs", *VALUE_SETS[name]).stdout
    r = subprocess.run([validator], input=out, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    kinds = sorted(line.split()[1] for line in r.stdout.splitlines())
    want = {
        "default": ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"],
        "dev": ["ConfigMap", "Deployment", "Deployment", "Deployment", "PodDisruptionBudget", "Service",
                "Service", "Service", "Service", "ServiceAccount"],
        "full": ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                 "PodDisruptionBudget", "Secret", "Secret", "Secret", "Secret", "Secret", "Service", "Service",
                 "ServiceAccount", "ServiceMonitor"],
    }[name]
    assert kinds == want, r.stdout


BAD_OBJECTS = [
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {matchLabels: {a: b}}\n"
     "  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n        image: i\n"
     "        livenesProbe: {}\n", 'unknown field "spec.template.spec.containers[0].livenesProbe"'),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: mqtt\n", "spec.ports"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1', a: '2'}\n", 'key "a" already set'),
    ("apiVersion: policy/v1beta9\nkind: PodDisruptionBudget\nmetadata: {name: x}\n", "no kind"),
    ("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n"
     "  selector: {matchLabels: {a: b}}\n  endpoints:\n  - port: http\n    intervl: 15s\n", 'unknown field "intervl"'),
    ("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n"
     "  selector: {matchLabels: {a: b}}\n  endpoints:\n  - port: http\n    interval: 15 s\n", "Prometheus duration"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n"
     "  template:\n    metadata: {labels: {a: c}}\n    spec:\n      containers: [{name: c, image: i}]\n",
     "does not match the pod template"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec:\n  ports: [{port: 1}]\n", "metadata.name"),
]


@pytest.mark.parametrize("doc,complaint", BAD_OBJECTS)
def test_the_validator_refuses_bad_objects(validator, doc, complaint):
    r = subprocess.run([validator], input=doc, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert complaint in r.stdout, r.stdout


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_service_target_ports_are_container_ports(rendered, name):
    docs, vals = rendered[name], load_values(name)
    c = shoal_container(broker(docs))
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    labels = broker(docs)["spec"]["template"]["metadata"]["labels"]
    services = [s for s in by_kind(docs, "Service")
                if s["spec"]["selector"].get("app.kubernetes.io/component") == "broker"]
    assert len(services) == 2
    for svc in services:
        # The selector picks the broker pods.
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in cports, (svc["metadata"]["name"], p)
    main = one(docs, "Service", "shoal")
    assert main["spec"]["type"] == vals["service"]["type"]
    names = {p["name"]: p["port"] for p in main["spec"]["ports"]}
    want = ["mqtt"]
    if vals["websocket"]["enabled"]:
        want.append("ws")
    if vals["tls"]["enabled"]:
        want += ["mqtts", "wss"] if vals["websocket"]["enabled"] else ["mqtts"]
    assert sorted(names) == sorted(want)
    assert names == {k: vals["service"]["ports"][k] for k in want}
    assert "http" not in names  # the admin API stays off the load balancer
    headless = one(docs, "Service", "shoal-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert sorted(p["targetPort"] for p in headless["spec"]["ports"]) == ["http", "mqtt"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_probes_hit_the_http_port(rendered, name):
    docs = rendered[name]
    c = shoal_container(broker(docs))
    http = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    _, conf = config_of(docs)
    assert int(conf["http-port"]) == http and conf["http-bind"] == "0.0.0.0"
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                        ("startupProbe", "/health/live")):
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # Listeners in the config file are the container's ports.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for key, port in (("port", "mqtt"), ("tls-port", "mqtts"), ("ws-port", "ws"), ("wss-port", "wss")):
        assert (key in conf) == (port in ports), key
        if key in conf:
            assert int(conf[key]) == ports[port], key


def pod_env(docs, container):
    """The container's environment as the kubelet would build it, Secrets
    resolved from the rendered ones (existingSecrets get a stand-in)."""
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: env.get(m.group(1), m.group(0)), e["value"])
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            s = secrets.get(ref["name"])
            env[e["name"]] = (__import__("base64").b64decode(s["data"][ref["key"]]).decode()
                              if s else "from-existing-secret")
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = {"metadata.name": "shoal-7d9f8-abcde",
                              "status.podIP": "10.1.2.3"}[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_the_rendered_config_passes_check_config(rendered, name, tmp_path):
    docs = rendered[name]
    c = shoal_container(broker(docs))
    text, conf = config_of(docs)
    f = tmp_path / "shoal.conf"
    f.write_text(text)
    assert c["args"] == ["--config", "/etc/shoal/config/shoal.conf"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(pod_env(docs, c))
    r = subprocess.run([SHOAL_BIN, "--check-config", str(f)], capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, r.stdout + r.stderr + text
    # The drain options are the node's now (check-config above parsed them).
    assert "drain-timeout" in conf and "drain-rate" in conf, conf
    # And the check can fail: the same file with a bad line does.
    f.write_text(text + "no-such-option 1\n")
    r = subprocess.run([SHOAL_BIN, "--check-config", str(f)], capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 1 and "no-such-option" in r.stderr


def test_backplane_settings(rendered):
    _, conf = config_of(rendered["default"])
    # External Redis and Kafka by default; production replication.
    assert conf["redis"] == "redis://redis-master:6379/0" and conf["kafka"] == "kafka:9092"
    assert conf["kafka-replication"] == "3" and conf["kafka-acks"] == "all"
    _, conf = config_of(rendered["dev"])
    assert conf["redis"] == "redis://shoal-redis:6379/0" and conf["kafka"] == "shoal-kafka:9092"
    assert conf["kafka-replication"] == "1"
    kafka = one(rendered["dev"], "Deployment", "shoal-kafka")
    kenv = {e["name"]: e.get("value") for e in kafka["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert kenv["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert kenv["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://shoal-kafka:9092"
    one(rendered["dev"], "Service", "shoal-kafka")
    one(rendered["dev"], "Service", "shoal-redis")
    # The Redis password stays out of the ConfigMap: the URL with it comes
    # from the environment, which wins over the file.
    docs = rendered["full"]
    text, conf = config_of(docs)
    assert "redis" not in conf and "s3cret" not in text
    env = pod_env(docs, shoal_container(broker(docs)))
    assert env["SHOAL_REDIS"] == "rediss://:s3cret:with@odd/chars@redis.data.svc:6380/2"


def test_cluster_lease(helm_env, rendered):
    """config.clusterLease becomes cluster-lease; 0 (the default) leaves the
    node's own default (3 heartbeats). The full render's file passes
    --check-config (test_the_rendered_config_passes_check_config)."""
    _, conf = config_of(rendered["default"])
    assert "cluster-lease" not in conf
    _, conf = config_of(rendered["full"])
    assert conf["cluster-lease"] == "15000"
    _, conf = config_of(render(helm_env, "--set", "config.clusterLease=12000", "--set",
                               "config.extra.cluster-heartbeat=4000"))
    assert conf["cluster-lease"] == "12000" and conf["cluster-heartbeat"] == "4000"


def test_kafka_tls_and_sasl(helm_env, rendered):
    _, conf = config_of(rendered["default"])
    assert not [k for k in conf if k.startswith(("kafka-tls", "kafka-sasl", "kafka-security"))], conf
    docs = rendered["full"]
    text, conf = config_of(docs)
    assert conf["kafka-security-protocol"] == "sasl_ssl"
    assert conf["kafka-sasl-mechanism"] == "SCRAM-SHA-512" and conf["kafka-sasl-username"] == "shoal"
    assert conf["kafka-sasl-password-file"] == "/etc/shoal/kafka-sasl/password"
    assert conf["kafka-tls-ca"] == "/etc/shoal/kafka-tls/ca.crt"
    assert conf["kafka-tls-cert"] == "/etc/shoal/kafka-tls/tls.crt"
    tls = one(docs, "Secret", "shoal-kafka-tls")
    assert sorted(tls["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    # The password is a file from the user's Secret: not in the environment.
    c = shoal_container(broker(docs))
    assert not [e for e in c.get("env", []) if "KAFKA" in e["name"]], c["env"]
    vol = [v for v in broker(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-sasl"][0]
    assert vol["secret"]["secretName"] == "kafka-user-shoal"
    # Each switch alone, and an inline password in the chart's own Secret.
    _, conf = config_of(render(helm_env, "--set", "kafka.tls.enabled=true"))
    assert conf["kafka-security-protocol"] == "ssl" and "kafka-tls-ca" not in conf  # the system's CAs
    docs = render(helm_env, "--set", "kafka.sasl.enabled=true", "--set", "kafka.sasl.mechanism=PLAIN",
                  "--set", "kafka.sasl.username=u", "--set", "kafka.sasl.password=pw-in-values")
    text, conf = config_of(docs)
    assert conf["kafka-security-protocol"] == "sasl_plaintext" and "pw-in-values" not in text
    s = one(docs, "Secret", "shoal-kafka")
    assert __import__("base64").b64decode(s["data"]["kafka-password"]) == b"pw-in-values"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_secrets_are_mounted_where_the_config_points(rendered, name):
    docs = rendered[name]
    dep = broker(docs)
    c = shoal_container(dep)
    _, conf = config_of(docs)
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    files = [k for k in ("tls-cert", "tls-key", "tls-ca", "password-file", "acl-file",
                         "redis-tls-ca", "redis-tls-cert", "redis-tls-key", "kafka-tls-ca", "kafka-tls-cert",
                         "kafka-tls-key", "kafka-sasl-password-file") if k in conf]
    if name == "full":
        assert sorted(files) == ["acl-file", "kafka-sasl-password-file", "kafka-tls-ca", "kafka-tls-cert",
                                 "kafka-tls-key", "password-file", "redis-tls-ca", "tls-ca", "tls-cert", "tls-key"]
    for key in files:
        path = conf[key]
        directory, base = os.path.dirname(path), os.path.basename(path)
        assert directory in mounts, (key, path)
        vol = volumes[mounts[directory]["name"]]
        assert "secret" in vol, (key, vol)
        items = vol["secret"].get("items")
        if items:
            assert base in [i["path"] for i in items], (key, items)
            secret_key = [i["key"] for i in items if i["path"] == base][0]
        else:
            secret_key = base
        s = secrets.get(vol["secret"]["secretName"])
        if s is not None:  # the chart's own Secret holds the file
            assert secret_key in s["data"], (key, s["metadata"]["name"])
    # Every mount has its volume, and the root filesystem stays read-only.
    for m in c["volumeMounts"]:
        assert m["name"] in volumes
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_grace_period_covers_the_drain(rendered, name):
    vals = load_values(name)
    spec = broker(rendered[name])["spec"]["template"]["spec"]
    c = shoal_container(broker(rendered[name]))
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep == vals["drain"]["preStopSleepSeconds"]
    assert spec["terminationGracePeriodSeconds"] >= sleep + vals["drain"]["timeoutSeconds"]
    # The node drains within the same bound the grace period was sized for.
    conf = config_of(rendered[name])[1]
    assert conf["drain-timeout"] == str(vals["drain"]["timeoutSeconds"]), conf
    assert conf["drain-rate"] == str(vals["drain"].get("rate", 500)), conf


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_security_context(rendered, name):
    spec = broker(rendered[name])["spec"]["template"]["spec"]
    c = shoal_container(broker(rendered[name]))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # deploy/Dockerfile's user
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    assert "cpu" not in c["resources"].get("limits", {})
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_full_features(rendered):
    docs = rendered["full"]
    dep = broker(docs)
    assert "replicas" not in dep["spec"]  # the HPA owns it
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shoal"}
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "shoal_connections_online"
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    headless = one(docs, "Service", "shoal-headless")
    assert all(headless["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert one(docs, "Service", "shoal")["metadata"]["labels"]["app.kubernetes.io/component"] != "headless"
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    np = one(docs, "NetworkPolicy")
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in np["spec"]["ingress"]]
    assert ports == [["mqtt", "mqtts", "ws", "wss"], ["http"]]
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert shoal_container(dep)["image"].startswith("registry.example.com/iot/shoal@sha256:")
    one(docs, "Secret", "shoal-tls")["type"] == "kubernetes.io/tls"
    assert configmaps(docs) and len(configmaps(docs)) == 1


def test_proxy_protocol_rendered(rendered):
    """Off by default; per listener and the trusted list when set (the
    rendered file's check-config run is test_the_rendered_config_passes_check_config)."""
    _, default = config_of(rendered["default"])
    assert not [k for k in default if k.startswith("proxy-")], default
    _, full = config_of(rendered["full"])
    assert full["proxy-protocol"] == "mqtt=v2,mqtts=v2,ws=v1,wss=off", full
    assert full["proxy-trusted"] == "10.0.0.0/8,192.168.1.10", full


@pytest.mark.parametrize("settings,complaint", [
    (["redis.host=", "replicaCount=3"], "kafka.brokers is set but redis.host is empty"),
    (["redis.host=", "kafka.brokers=", "replicaCount=3"], "more than one node"),
    (["tls.enabled=true"], "tls.enabled needs"),
    (["kafka.inRelease.enabled=true"], "set kafka.replicationFactor to 1"),
    (["config.extra.port=1884"], "config.extra.port"),
    (["config.clusterLease=2999"], "config.clusterLease: 0 (3 heartbeats) or at least 3 x cluster-heartbeat (3000 ms)"),
    (["config.clusterLease=10000", "config.extra.cluster-heartbeat=5000"], "(15000 ms), not 10000"),
    (["config.extra.cluster-lease=10000"], "config.extra.cluster-lease"),
    (["autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"], "maxReplicas"),
    (["proxyProtocol.mqtt=v2"], "proxyProtocol.trusted"),
    (["kafka.sasl.enabled=true", "kafka.sasl.password=x"], "kafka.sasl.enabled needs kafka.sasl.username"),
    (["kafka.sasl.enabled=true", "kafka.sasl.username=u"], "kafka.sasl.enabled needs kafka.sasl.password"),
    (["kafka.tls.enabled=true", "kafka.tls.cert=x"], "kafka.tls.cert and kafka.tls.key go together"),
    (["kafka.inRelease.enabled=true", "kafka.replicationFactor=1", "kafka.tls.enabled=true"],
     "kafka.inRelease runs a PLAINTEXT Kafka"),
])
def test_bad_combinations_fail_the_render(helm_env, settings, complaint):
    args = [a for s in settings for a in ("--set", s)]
    r = helm(helm_env, "template", "shoal", CHART, *args, check=False)
    assert r.returncode != 0 and complaint in r.stderr, r.stderr


def test_a_single_node_without_backplane(helm_env):
    docs = render(helm_env, "--set", "redis.host=", "--set", "kafka.brokers=", "--set", "replicaCount=1")
    _, conf = config_of(docs)
    assert "redis" not in conf and "kafka" not in conf


def notes(env, tmp_path, *args):
    """NOTES.txt as helm would print it after an install. `helm install
    --dry-run` wants a cluster, so a copy of the chart renders it as an
    ordinary template."""
    chart = tmp_path / "shoal"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        shutil.copy(chart / "templates/NOTES.txt", chart / "notes.txt")
        (chart / "templates/notes-copy.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            "data:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n")
    out = helm(env, "template", "shoal", str(chart), "--namespace", "obs",
               "--show-only", "templates/notes-copy.yaml", *args).stdout
    return yaml.safe_load(out)["data"]["notes"]


def test_notes_say_how_to_connect(helm_env, tmp_path):
    text = notes(helm_env, tmp_path)
    assert "mosquitto_sub -h $SHOAL_HOST -p 1883 -t" in text and "ws://$SHOAL_HOST:8083/mqtt" in text
    assert "loadBalancer.ingress" in text and "/health/ready" in text
    assert "without a password" in text and "answers 403" in text
    text = notes(helm_env, tmp_path, "-f", DEV_VALUES)
    assert "port-forward svc/shoal 1883 8083" in text
    text = notes(helm_env, tmp_path, "-f", os.path.join(CHART, "ci/full-values.yaml"))
    assert "-p 8883 --cafile CA.pem -u USER -P PASSWORD" in text and "wss://$SHOAL_HOST:8084/mqtt" in text
    assert "without a password" not in text and "shoal-admin-token" in text and "Grafana" in text


def test_readme_lists_every_value():
    with open(os.path.join(CHART, "README.md")) as f:
        readme = f.read()

    def leaves(d, prefix=""):
        for k, v in d.items():
            key = prefix + k
            if isinstance(v, dict) and v and key not in ("resources", "podSecurityContext", "securityContext",
                                                         "redis.inRelease.resources", "kafka.inRelease.resources",
                                                         "autoscaling.behavior", "grafanaDashboard.labels"):
                yield from leaves(v, key + ".")
            else:
                yield key
    with open(os.path.join(CHART, "values.yaml")) as f:
        missing = [k for k in leaves(yaml.safe_load(f)) if "`%s`" % k not in readme]
    assert missing == []
