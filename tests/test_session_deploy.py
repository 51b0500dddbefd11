"""The replicas deployment (deploy/replicas, deploy/k8s-redis) is valid for its tools.

Each check runs the real tool and skips only when it is absent."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nginxproc import NGINX, config_for
from tests.serverproc import ROOT

OVERRIDE = "deploy/replicas/docker-compose.replicas.yml"


def run(*args: str) -> str:
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed")
    return found


@pytest.mark.skipif(NGINX is None, reason="nginx not installed")
def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(config_for([18001, 18002, 18003], 18080))
    out = run(
        NGINX, "-t", "-c", str(conf), "-p", str(tmp_path), "-g", f"pid {tmp_path / 'nginx.pid'};"
    )
    assert "test is successful" in out
    assert "hash $lstm_session_key consistent;" in conf.read_text()


def test_compose_override_adds_redis_replicas_and_balancer() -> None:
    compose = tool("docker-compose")
    args = (compose, "-f", "docker-compose.yml", "-f", OVERRIDE, "--profile", "replicas")
    run(*args, "config", "--quiet")
    services = set(run(*args, "config", "--services").split())
    assert {"redis", "replica-1", "replica-2", "session-lb"} <= services
    rendered = run(*args, "config")
    assert "LSTM_SERVE_SESSION_STORE: redis://redis:6379/0" in rendered
    assert str(ROOT / "deploy" / "replicas" / "nginx.conf") in rendered


def test_kustomize_renders_redis_and_replicas(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    rendered = run(tool("kubectl"), "kustomize", "deploy/k8s-redis")
    objects = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}
    assert ("StatefulSet", "redis") in objects and ("Deployment", "session-lb") in objects
    deployment = objects[("Deployment", "lstm-serve")]
    assert deployment["spec"]["replicas"] >= 2
    config = next(
        d
        for (kind, name), d in objects.items()
        if kind == "ConfigMap" and name.startswith("lstm-serve-config")
    )
    assert config["data"]["LSTM_SERVE_SESSION_STORE"] == "redis://redis:6379/0"
    assert all(
        d["metadata"].get("namespace") == "lstm-serve"
        for (kind, _), d in objects.items()
        if kind != "Namespace"
    )
    in_venv = Path(sys.executable).parent / "kubernetes-validate"
    validator = str(in_venv) if in_venv.is_file() else shutil.which("kubernetes-validate")
    if validator is not None:
        path = tmp_path / "rendered.yaml"
        path.write_text(rendered)
        run(validator, "--strict", str(path))
