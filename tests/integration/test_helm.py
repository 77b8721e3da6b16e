"""The Helm chart in helm/shoal, rendered and linted by the real helm.

No cluster is needed: `helm lint` and `helm template` run offline, and the
chart's values.schema.json is checked by helm on every render.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

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
    return [d for d in docs if d.get("kind") == "ConfigMap"]


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


def test_defaults_render_no_configmap(helm_env):
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


def test_packaged_chart_carries_the_dashboard(helm_env, tmp_path):
    # What `helm package` ships (after .helmignore) is what users install.
    helm(helm_env, "package", CHART, "--destination", str(tmp_path))
    pkg = tmp_path / "shoal-0.1.0.tgz"
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
])
def test_schema_rejects_bad_values(helm_env, setting, complaint):
    r = helm(helm_env, "template", "shoal", CHART, "--set", setting, check=False)
    assert r.returncode != 0, "helm accepted --set %s:\n%s" % (setting, r.stdout)
    assert "schema" in r.stderr and complaint in r.stderr, r.stderr


def test_lint_rejects_a_misspelt_value(helm_env):
    r = helm(helm_env, "lint", "--strict", CHART, "--set", "grafanaDashboard.enabeld=true", check=False)
    assert r.returncode != 0 and "'enabeld' not allowed" in r.stdout + r.stderr, r.stdout + r.stderr
