"""Deployment files are valid for the tools that consume them.

Each check runs the real tool (docker-compose, hadolint, promtool, kubectl kustomize,
kubernetes-validate, shellcheck) and skips only when that tool is absent;
``deploy/ci-setup.sh`` installs all of them in CI. The last group checks that every metric
the dashboard and the alert rules query is one that ``ApiMetrics`` or ``EngineMetrics`` exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from service.api.metrics import ApiMetrics
from service.engine.metrics import EngineMetrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "lstm-serve.json"
K8S = DEPLOY / "k8s"
VENV_BIN = Path(sys.executable).parent
TOOL_TIMEOUT_S = 120


def tool(name: str) -> str:
    """Path of ``name`` in the running venv or on PATH; skip the test without it."""
    in_venv = VENV_BIN / name
    if in_venv.is_file():
        return str(in_venv)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (deploy/ci-setup.sh installs it)")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


# --- Docker ---------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "--failure-threshold", "info", "Dockerfile")


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert 'ARG TORCH_SPEC="torch==2.13.0"' in text
    assert "ARG PIP_EXTRA_ARGS" in text
    assert not re.search(r"index-url[= ]+\S*://", text), "no package index host baked in"
    assert re.search(r"^USER 10001:10001$", text, re.M), "runs as a numeric non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.M)
    assert "LSTM_SERVE_HOST=0.0.0.0" in text
    final_stage = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)[-1]
    assert final_stage == "cpu", "the default target is the CPU image"


def test_compose_config_is_valid() -> None:
    compose = tool("docker-compose")
    run(compose, "-f", "docker-compose.yml", "config", "--quiet")
    services = run(
        compose,
        "-f",
        "docker-compose.yml",
        "--profile",
        "gpu",
        "--profile",
        "loadtest",
        "config",
        "--services",
    ).stdout.split()
    assert set(services) == {"lstm-serve", "lstm-serve-gpu", "prometheus", "grafana", "loadtest"}


def test_compose_profiles_and_gpu_reservation() -> None:
    yaml = pytest.importorskip("yaml")
    rendered = run(
        tool("docker-compose"),
        "-f",
        "docker-compose.yml",
        "--profile",
        "gpu",
        "--profile",
        "loadtest",
        "config",
    ).stdout
    services = yaml.safe_load(rendered)["services"]
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles == {
        "lstm-serve": [],
        "prometheus": [],
        "grafana": [],
        "lstm-serve-gpu": ["gpu"],
        "loadtest": ["loadtest"],
    }
    gpu = services["lstm-serve-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["environment"]["LSTM_SERVE_DEVICE"] == "cuda"
    assert "healthcheck" in services["lstm-serve"]
    assert "lstm-serve-bench" in services["loadtest"]["command"]


@pytest.mark.parametrize("script", ["smoke-docker", "ci-setup.sh"])
def test_deploy_scripts_pass_shellcheck(script: str) -> None:
    run(tool("shellcheck"), str(DEPLOY / script))


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    run(tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)


def test_alert_rules_are_valid() -> None:
    run(tool("promtool"), "check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)


def test_alert_rules_fire_as_specified() -> None:
    run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL (as a recording rule, Grafana variables bound)."""
    yaml = pytest.importorskip("yaml")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": bind_grafana_variables(expr)}
        for i, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run(tool("promtool"), "check", "rules", str(path))


def test_dashboard_shows_what_operators_need() -> None:
    names = {name for expr in dashboard_queries() for name in metric_names(expr)}
    for needed in (
        "lstm_serve_requests_total",
        "lstm_serve_request_duration_seconds_bucket",
        "lstm_serve_batch_size_bucket",
        "lstm_serve_queue_depth",
        "lstm_serve_sessions_live",
        "lstm_serve_tokens_total",
        "lstm_serve_errors_total",
    ):
        assert needed in names, f"the dashboard has no panel on {needed}"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
    provisioned = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    assert "uid: prometheus" in provisioned.read_text()


# --- Kubernetes -----------------------------------------------------------------------------

K8S_TARGETS = {"base": K8S / "base", "gpu": K8S / "overlays" / "gpu"}


def render(target: str) -> str:
    return run(tool("kubectl"), "kustomize", str(K8S_TARGETS[target])).stdout


@pytest.mark.parametrize("target", sorted(K8S_TARGETS))
def test_kustomize_renders_and_validates_strictly(target: str, tmp_path: Path) -> None:
    rendered = tmp_path / f"{target}.yaml"
    rendered.write_text(render(target))
    validator = tool("kubernetes-validate")
    result = run(validator, "--strict", str(rendered))
    assert "failed" not in result.stdout.lower() + result.stderr.lower()


def k8s_objects(target: str) -> dict[str, dict]:
    yaml = pytest.importorskip("yaml")
    return {doc["kind"]: doc for doc in yaml.safe_load_all(render(target)) if doc}


@pytest.mark.parametrize("target", sorted(K8S_TARGETS))
def test_deployment_is_hardened_and_drains(target: str) -> None:
    objects = k8s_objects(target)
    config = objects["ConfigMap"]["data"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    tmp_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp_mount["name"])
    assert "emptyDir" in volume
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        container["envFrom"][0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    )
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # On SIGTERM the server drains for up to LSTM_SERVE_DRAIN_TIMEOUT_S, then gives uvicorn's
    # graceful shutdown as long again (service/cli.py): the pod must not be killed before.
    drain_s = float(config["LSTM_SERVE_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + 2 * drain_s, (
        "the grace period must cover the preStop sleep and twice LSTM_SERVE_DRAIN_TIMEOUT_S"
    )
    service = objects["Service"]["spec"]
    assert service["sessionAffinity"] == "ClientIP"
    assert service["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == int(
        float(config["LSTM_SERVE_SESSION_TTL_S"])
    )
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= objects.keys()


def test_gpu_overlay_asks_for_a_gpu() -> None:
    objects = k8s_objects("gpu")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda")
    assert objects["ConfigMap"]["data"]["LSTM_SERVE_DEVICE"] == "cuda"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]


# --- Metric names ---------------------------------------------------------------------------

SERIES_LABELS = {"instance", "job", "le"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}


def exported_series() -> dict[str, set[str]]:
    """Series names the server exports (from its registry), each with its label names."""
    every = [ApiMetrics(), EngineMetrics()]
    labels_of = {
        wrapper._name: set(wrapper._labelnames)  # label names of labelled metrics
        for metrics in every
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    series: dict[str, set[str]] = {}
    families = [family for metrics in every for family in metrics.registry.collect()]
    for family in families:
        if family.type == "counter":
            names = [family.name + "_total", family.name + "_created"]
        elif family.type == "histogram":
            names = [family.name + s for s in ("_bucket", "_sum", "_count", "_created")]
        else:
            names = [family.name]
        labels = labels_of.get(family.name, labels_of.get(family.name + "_total", set()))
        for name in names:
            series[name] = labels
    return series


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]["query"]


def alert_queries() -> Iterator[str]:
    yaml = pytest.importorskip("yaml")
    for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def bind_grafana_variables(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
    return re.sub(r"label_values\((\w+), *\w+\)", r"\1", expr)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\blstm_serve_[a-z0-9_]+", expr))


def label_names(expr: str) -> set[str]:
    """Label names a query selects on or aggregates by."""
    names = set(re.findall(r"[{,]\s*([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names.update(n.strip() for n in group.split(",") if n.strip())
    return names - PROMQL_WORDS


def all_queries() -> list[tuple[str, str]]:
    return [("dashboard", e) for e in dashboard_queries()] + [
        ("alerts", e) for e in alert_queries()
    ]


def test_metrics_exports_what_is_expected() -> None:
    series = exported_series()
    assert "lstm_serve_requests_total" in series
    assert "lstm_serve_request_duration_seconds_bucket" in series
    assert series["lstm_serve_requests_total"] == {"route", "method", "status"}


def test_dashboard_and_alerts_query_only_exported_metrics() -> None:
    series = exported_series()
    for source, expr in all_queries():
        for name in metric_names(expr):
            assert name in series, f"{source}: {name} is not exported by service/metrics.py"


def test_dashboard_and_alerts_use_only_existing_labels() -> None:
    series = exported_series()
    for source, expr in all_queries():
        names = metric_names(expr)
        if not names:
            continue
        known = set().union(*(series.get(n, set()) for n in names)) | SERIES_LABELS
        unknown = label_names(expr) - known
        assert not unknown, f"{source}: labels {unknown} do not exist on {names}: {expr}"
