"""Layering (docs: ARCHITECTURE): the arrows that must never exist.

``service.api`` -> ``service.engine.client`` -> (channel) -> ``service.engine`` -> ``models``;
the shell (cli, settings, supervisor, processes, logs, metrics setup, cpu sharing) starts
them. Checked on the source (imports) and on a real interpreter (what loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = {"fastapi", "starlette", "uvicorn"}
SHELL = {
    "service.cli",
    "service.settings",
    "service.supervisor",
    "service.processes",
    "service.logs",
    "service.metrics_setup",
    "service.cpu_sharing",
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, dotted (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _tops(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def _engine_files() -> list[Path]:
    return [p for p in (ROOT / "service" / "engine").rglob("*.py") if p.name != "client.py"]


def test_models_does_not_import_service() -> None:
    for path in (ROOT / "models").rglob("*.py"):
        assert "service" not in _tops(_imports(path)), path


def test_engine_knows_no_http_no_api_and_no_shell() -> None:
    for path in _engine_files():
        names = _imports(path)
        assert not WEB & _tops(names), path
        assert not {n for n in names if n.startswith("service.api")}, path
        assert not SHELL & names, (path, SHELL & names)


def test_api_reaches_the_engine_only_through_its_client() -> None:
    allowed = {"service.engine.client"}
    for path in (ROOT / "service" / "api").rglob("*.py"):
        engine = {n for n in _imports(path) if n.startswith("service.engine")}
        outside = {n for n in engine if not any(n.startswith(a) for a in allowed)}
        assert not outside, (path, outside)
        assert "torch" not in _tops(_imports(path)), path


def test_bench_and_service_never_import_tests() -> None:
    for folder in ("bench", "service", "models", "lstm_serve"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "tests" not in _tops(_imports(path)), path


def test_an_api_process_does_not_load_torch() -> None:
    """The client and the app import no torch: an API process stays small and quick."""
    code = (
        "import sys; import service.engine.client, service.api.app; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False", result.stdout + result.stderr
