"""The ``POST /v1/predict`` shortcut: what it answers itself, and what it leaves to FastAPI."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api import fast_predict
from service.api.app import create_app
from service.settings import Settings


def _scope(settings: Settings, ready: bool = True, headers: Any = ()) -> dict[str, Any]:
    app = create_app(settings)
    app.state.engine = SimpleNamespace(ready=ready)
    return {"type": "http", "app": app, "headers": list(headers), "query_string": b""}


def test_only_valid_requests_to_a_ready_server_take_the_shortcut() -> None:
    settings = Settings(max_k=10)
    accepted = fast_predict._accepted
    request = accepted(_scope(settings), b'{"text": "the company", "k": 3}')
    assert request is not None and request.text == "the company" and request.k == 3
    assert accepted(_scope(settings, ready=False), b'{"text": "the"}') is None
    for body in (b"{not json", b"", b"null", b'{"text": 5}', b'{"k": 11}', b'{"x": 1}'):
        assert accepted(_scope(settings), body) is None, body


def test_with_api_keys_only_an_authorised_request_takes_the_shortcut() -> None:
    settings = Settings(api_keys="k1,k2")
    body = b'{"text": "the"}'
    assert fast_predict._accepted(_scope(settings), body) is None
    wrong = [(b"authorization", b"Bearer nope")]
    assert fast_predict._accepted(_scope(settings, headers=wrong), body) is None
    right = [(b"authorization", b"Bearer k2")]
    assert fast_predict._accepted(_scope(settings, headers=right), body) is not None


def test_replay_gives_the_body_back_first() -> None:
    async def later() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def scenario() -> list[dict[str, Any]]:
        receive = fast_predict._replay(b"abc", later)
        return [await receive(), await receive()]

    first, second = asyncio.run(scenario())
    assert first == {"type": "http.request", "body": b"abc", "more_body": False}
    assert second == {"type": "http.disconnect"}


def _predict_200s(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "lstm_serve_requests_total"
                and sample.labels["route"] == "/v1/predict"
                and sample.labels["status"] == "200"
            ):
                return sample.value
    return 0.0


@pytest.mark.integration
def test_any_content_type_is_answered_and_counted_under_its_route(server) -> None:
    before = _predict_200s(server.url)
    answer = httpx.post(
        server.url + "/v1/predict",
        content=b'{"text": "the company", "k": 2}',
        headers={"content-type": "application/x-www-form-urlencoded"},  # what curl -d sends
    )
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    assert answer.headers["x-request-id"]
    assert _predict_200s(server.url) == before + 1
