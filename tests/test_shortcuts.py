"""Route shortcuts (predict, session feed): what they answer, and what they leave to FastAPI."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api import shortcuts
from service.api.app import create_app
from service.settings import Settings


def _scope(settings: Settings, ready: bool = True, headers: Any = ()) -> dict[str, Any]:
    app = create_app(settings)
    app.state.engine = SimpleNamespace(ready=ready)
    return {"type": "http", "app": app, "headers": list(headers), "query_string": b""}


def test_only_valid_requests_to_a_ready_server_take_the_shortcut() -> None:
    settings = Settings(max_k=10)

    def accepted(scope: dict[str, Any], body: bytes) -> Any:
        return shortcuts._accepted(shortcuts.PREDICT, scope, body)

    request, owner = accepted(_scope(settings), b'{"text": "the company", "k": 3}')
    assert request.text == "the company" and request.k == 3 and owner is None
    assert accepted(_scope(settings, ready=False), b'{"text": "the"}') is None
    for body in (b"{not json", b"", b"null", b'{"text": 5}', b'{"k": 11}', b'{"x": 1}'):
        assert accepted(_scope(settings), body) is None, body
    # A feed needs its text: an empty body is the route's 422, not a shortcut.
    assert shortcuts._accepted(shortcuts.FEED, _scope(settings), b"{}") is None


def test_with_api_keys_only_an_authorised_request_takes_the_shortcut() -> None:
    settings = Settings(api_keys="k1,k2")
    body = b'{"text": "the"}'
    feed = shortcuts.FEED
    assert shortcuts._accepted(feed, _scope(settings), body) is None
    wrong = [(b"authorization", b"Bearer nope")]
    assert shortcuts._accepted(feed, _scope(settings, headers=wrong), body) is None
    right = [(b"authorization", b"Bearer k2")]
    accepted = shortcuts._accepted(feed, _scope(settings, headers=right), body)
    assert accepted is not None and accepted[1] is not None  # the key's owner id


def test_only_the_two_hot_routes_match() -> None:
    def scope(method: str, path: str) -> dict[str, Any]:
        return {"method": method, "path": path}

    assert shortcuts.match(scope("POST", "/v1/predict")) == (shortcuts.PREDICT, "")
    assert shortcuts.match(scope("POST", "/v1/sessions/abc/feed")) == (shortcuts.FEED, "abc")
    for method, path in (
        ("GET", "/v1/predict"),
        ("POST", "/v1/score"),
        ("POST", "/v1/sessions//feed"),
        ("POST", "/v1/sessions/abc/reset"),
        ("POST", "/v1/sessions/a/b/feed"),
        ("POST", "/v1/predict/"),
    ):
        assert shortcuts.match(scope(method, path)) is None, (method, path)


def test_replay_gives_the_body_back_first() -> None:
    async def later() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def scenario() -> list[dict[str, Any]]:
        receive = shortcuts._replay(b"abc", later)
        return [await receive(), await receive()]

    first, second = asyncio.run(scenario())
    assert first == {"type": "http.request", "body": b"abc", "more_body": False}
    assert second == {"type": "http.disconnect"}


def _count(url: str, route: str, status: str) -> float:
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "lstm_serve_requests_total"
                and sample.labels["route"] == route
                and sample.labels["status"] == status
            ):
                return sample.value
    return 0.0


@pytest.mark.integration
def test_any_content_type_is_answered_and_counted_under_its_route(server) -> None:
    before = _count(server.url, "/v1/predict", "200")
    answer = httpx.post(
        server.url + "/v1/predict",
        content=b'{"text": "the company", "k": 2}',
        headers={"content-type": "application/x-www-form-urlencoded"},  # what curl -d sends
    )
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    assert answer.headers["x-request-id"]
    assert _count(server.url, "/v1/predict", "200") == before + 1


@pytest.mark.integration
def test_session_feeds_through_the_shortcut_match_the_route_errors(server) -> None:
    route = "/v1/sessions/{session_id}/feed"
    sid = httpx.post(server.url + "/v1/sessions", json={"text": "the bank"}).json()["session_id"]
    before = _count(server.url, route, "200")
    fed = httpx.post(f"{server.url}/v1/sessions/{sid}/feed", json={"text": "said its", "k": 3})
    assert fed.status_code == 200
    body = fed.json()
    assert body["session_id"] == sid and body["position"] == 4 and len(body["predictions"]) == 3
    assert _count(server.url, route, "200") == before + 1
    missing = httpx.post(server.url + "/v1/sessions/nope/feed", json={"text": "the"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    assert _count(server.url, route, "404") >= 1
    bad = httpx.post(f"{server.url}/v1/sessions/{sid}/feed", json={"text": 5})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
