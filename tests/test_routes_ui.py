"""``service.api.routes_ui``: playground and offline docs, on a bare app that installs them."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lstm_serve.client import ERRORS
from service.api import routes_ui
from service.api.openapi_text import OPENAPI_DESCRIPTION
from tests.conftest import ROOT

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def make_app() -> FastAPI:
    app = FastAPI(
        title="lstm-serve", description=OPENAPI_DESCRIPTION, docs_url=None, redoc_url=None
    )

    @app.get("/v1/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    routes_ui.install(app)
    return app


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(make_app())


def test_playground_at_root(http: TestClient) -> None:
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "lstm-serve" in page.text and 'id="suggestions"' in page.text
    assert not EXTERNAL.search(page.text), "the playground must not load anything from outside"
    assert "http://" not in page.text and "https://" not in page.text
    for kind in ("feed", "generate", "cancel", "reset", "close"):  # the protocol's messages
        assert f'type: "{kind}"' in page.text


def test_swagger_ui_is_served_offline(http: TestClient) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert "/static/docs/swagger-ui-bundle.js" in page.text
    assert "/static/docs/swagger-ui.css" in page.text
    assert "/openapi.json" in page.text
    assert not EXTERNAL.search(page.text) and "cdn" not in page.text.lower()
    assert '"validatorUrl": null' in page.text  # no badge from validator.swagger.io
    assert page.headers["content-security-policy"] == routes_ui.DOCS_CSP
    assert http.get("/docs/oauth2-redirect").status_code == 200


def test_redoc_is_served_offline(http: TestClient) -> None:
    page = http.get("/redoc")
    assert page.status_code == 200
    assert "/static/docs/redoc.standalone.js" in page.text
    assert not EXTERNAL.search(page.text), "no CDN script and no Google fonts"
    # ReDoc's bundle still names its logo on a CDN: the policy keeps browsers from asking.
    assert "img-src 'self' data:;" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("name", "content_type", "min_bytes"),
    [
        ("swagger-ui-bundle.js", "javascript", 500_000),
        ("swagger-ui.css", "text/css", 50_000),
        ("redoc.standalone.js", "javascript", 500_000),
        ("favicon.png", "image/png", 100),
    ],
)
def test_assets(http: TestClient, name: str, content_type: str, min_bytes: int) -> None:
    asset = http.get(f"/static/docs/{name}")
    assert asset.status_code == 200 and content_type in asset.headers["content-type"]
    assert len(asset.content) >= min_bytes


def test_pages_are_not_in_the_schema(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/ping"}
    assert schema["info"]["description"] == OPENAPI_DESCRIPTION


def test_behind_a_path_prefix() -> None:
    http = TestClient(make_app(), root_path="/lstm")
    docs = http.get("/docs").text
    assert "/lstm/static/docs/swagger-ui-bundle.js" in docs and "/lstm/openapi.json" in docs
    assert "/lstm/static/docs/redoc.standalone.js" in http.get("/redoc").text


def test_missing_files_fail_at_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(routes_ui, "DOCS_ASSETS", tmp_path)
    with pytest.raises(RuntimeError, match=r"swagger-ui-bundle\.js"):
        routes_ui.install(FastAPI(docs_url=None, redoc_url=None))


def test_description_covers_the_contract() -> None:
    """Every error code, every stream message, and the close codes are described."""
    for code, kind in ERRORS.items():
        assert f"| `{code}` | {kind.status} |" in OPENAPI_DESCRIPTION
    for message in ("feed", "generate", "cancel", "reset", "close"):
        assert f'{{"type": "{message}"' in OPENAPI_DESCRIPTION
    for answer in ("ready", "predictions", "token", "done", "error"):
        assert f'"type": "{answer}"' in OPENAPI_DESCRIPTION
    assert "1008" in OPENAPI_DESCRIPTION and "1012" in OPENAPI_DESCRIPTION


def test_repository_docs_exist() -> None:
    contract = (ROOT / "docs" / "API.md").read_text()
    assert all(f"`{code}`" in contract for code in ERRORS)
    assert "WS /v1/stream" in contract
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
