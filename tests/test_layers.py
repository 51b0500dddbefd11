"""Layering: models/ never imports service/; below the API nothing imports FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_models_does_not_import_service() -> None:
    for path in (ROOT / "models").rglob("*.py"):
        assert "service" not in _imports(path), path


def test_engine_knows_no_http() -> None:
    web = {"fastapi", "starlette", "uvicorn"}
    for path in (ROOT / "service").rglob("*.py"):
        if "api" in path.relative_to(ROOT / "service").parts or path.name == "cli.py":
            continue
        assert not web & _imports(path), path
