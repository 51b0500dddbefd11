"""The HTTP routes of ../shared/API.md against a real uvicorn server."""

from __future__ import annotations

import json
import math

import httpx
import pytest

pytestmark = pytest.mark.integration


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body["error"]


def test_health_ready_and_model_card(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready", "reason": None}
    card = client.get("/v1/models").json()
    for field in (
        "id",
        "architecture",
        "layers",
        "hidden_size",
        "embedding_size",
        "vocab_size",
        "parameters",
        "tied_weights",
        "training_data",
        "valid_perplexity",
        "test_perplexity",
        "device",
        "dtype",
    ):
        assert field in card
    assert card["vocab_size"] == 10000 and card["layers"] == 2 and card["device"] == "cpu"


def test_predict_shape_normalisation_and_order(client: httpx.Client) -> None:
    body = client.post("/v1/predict", json={"text": "It's 1999", "k": 20}).json()
    assert body["tokens"] == ["it", "'s", "N"]
    assert body["model"] == client.get("/v1/models").json()["id"]
    predictions = body["predictions"]
    assert len(predictions) == 20
    assert [p["probability"] for p in predictions] == sorted(
        (p["probability"] for p in predictions), reverse=True
    )
    for p in predictions:
        assert set(p) == {"word", "probability", "logprob"}
        assert math.isclose(p["probability"], math.exp(p["logprob"]), rel_tol=1e-6)
    assert len(client.post("/v1/predict", json={"text": "the"}).json()["predictions"]) == 5
    assert (
        len(client.post("/v1/predict", json={"text": "the", "k": 100}).json()["predictions"]) == 100
    )


def test_empty_text_predicts_a_sentence_start(client: httpx.Client) -> None:
    empty = client.post("/v1/predict", json={"text": "", "k": 5}).json()
    assert empty["tokens"] == [] and len(empty["predictions"]) == 5
    session = client.post("/v1/sessions", json={}).json()
    assert session["predictions"] == empty["predictions"]


def test_exclude_special(client: httpx.Client) -> None:
    body = client.post(
        "/v1/predict", json={"text": "hello", "k": 30, "exclude_special": True}
    ).json()
    assert len(body["predictions"]) == 30
    assert not {"<unk>", "<eos>"} & {p["word"] for p in body["predictions"]}


@pytest.mark.parametrize(
    "payload",
    [
        {"text": 1},
        {"text": "a", "k": 0},
        {"text": "a", "k": 101},
        {"text": "a", "k": True},
        {"text": "a", "k": "5"},
        {"text": "a", "k": 2.5},
        {"text": "a", "bogus": 1},
        [],
        {"text": None},
    ],
)
def test_predict_rejects_bad_fields(client: httpx.Client, payload: object) -> None:
    error = assert_error(client.post("/v1/predict", json=payload), 422, "invalid_request")
    assert error["message"]


def test_malformed_json_and_unknown_routes(client: httpx.Client) -> None:
    assert_error(client.post("/v1/predict", content=b"{not json"), 422, "invalid_request")
    assert_error(client.post("/v1/predict", content=b""), 422, "invalid_request")
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")


def test_size_limits(client: httpx.Client) -> None:
    error = assert_error(
        client.post("/v1/predict", json={"text": "a " * 1001}), 413, "payload_too_large"
    )
    assert "2000" in error["message"]
    assert_error(
        client.post("/v1/score", content=json.dumps({"text": "b" * 30000})),
        413,
        "payload_too_large",
    )


def test_score(client: httpx.Client) -> None:
    body = client.post("/v1/score", json={"text": "the company said it expects"}).json()
    assert body["tokens"] == ["the", "company", "said", "it", "expects"]
    assert math.isclose(body["logprob"], sum(body["token_logprobs"]), rel_tol=1e-9)
    assert math.isclose(body["perplexity"], math.exp(-body["logprob"] / 5), rel_tol=1e-9)
    sid = client.post("/v1/sessions", json={}).json()["session_id"]
    for word, logprob in zip(body["tokens"], body["token_logprobs"], strict=True):
        fed = client.post(f"/v1/sessions/{sid}/feed", json={"text": word}).json()
        assert abs(fed["logprob"] - logprob) < 1e-5
    empty = client.post("/v1/score", json={"text": ""}).json()
    assert empty["tokens"] == [] and empty["logprob"] == 0 and empty["perplexity"] is None


def test_generate_json(client: httpx.Client) -> None:
    request = {
        "text": "the market",
        "max_tokens": 12,
        "temperature": 0.8,
        "seed": 42,
        "stop_at_eos": False,
    }
    first = client.post("/v1/generate", json=request).json()
    assert first["prompt_tokens"] == ["the", "market"]
    assert len(first["tokens"]) == 12 and first["finish_reason"] == "length"
    assert "<unk>" not in first["tokens"]
    assert first == client.post("/v1/generate", json=request).json()
    greedy = client.post(
        "/v1/generate", json={"text": "the", "temperature": 0, "max_tokens": 5}
    ).json()
    assert (
        greedy
        == client.post(
            "/v1/generate", json={"text": "the", "temperature": 0, "max_tokens": 5}
        ).json()
    )
    for seed in range(6):
        body = client.post("/v1/generate", json={"max_tokens": 50, "seed": seed}).json()
        if body["finish_reason"] == "eos":
            assert body["tokens"][-1] == "<eos>" and body["text"].endswith("\n")
    assert_error(client.post("/v1/generate", json={"max_tokens": 201}), 422, "invalid_request")
    assert_error(client.post("/v1/generate", json={"top_p": 0}), 422, "invalid_request")
    assert_error(client.post("/v1/generate", json={"temperature": -1}), 422, "invalid_request")


def test_generate_sse(client: httpx.Client) -> None:
    request = {"text": "the market", "max_tokens": 8, "seed": 3, "stop_at_eos": False}
    plain = client.post("/v1/generate", json=request).json()
    events = []
    with client.stream("POST", "/v1/generate", json={**request, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    words = events[:-1]
    assert [e["index"] for e in words] == list(range(8))
    assert [e["word"] for e in words] == plain["tokens"]
    assert events[-1]["finish_reason"] == "length" and events[-1]["text"] == plain["text"]


def test_session_lifecycle(client: httpx.Client) -> None:
    created = client.post("/v1/sessions", json={"text": "the company", "k": 3})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"session_id", "position", "tokens", "predictions"}
    sid = body["session_id"]
    assert body["position"] == 2 and len(body["predictions"]) == 3 and len(sid) >= 22
    info = client.get(f"/v1/sessions/{sid}").json()
    assert set(info) == {"session_id", "position", "created_at", "last_used_at", "expires_at"}
    assert info["position"] == 2 and info["expires_at"] > info["last_used_at"]
    fed = client.post(f"/v1/sessions/{sid}/feed", json={"text": "said it"}).json()
    assert fed["position"] == 4 and fed["tokens"] == ["said", "it"] and fed["logprob"] < 0
    reset = client.post(f"/v1/sessions/{sid}/reset")
    assert reset.status_code == 200 and reset.json()["position"] == 0
    again = client.post(f"/v1/sessions/{sid}/feed", json={"text": "the"}).json()
    stateless = client.post("/v1/predict", json={"text": "the"}).json()
    assert again["predictions"] == stateless["predictions"]
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    for response in (
        client.get(f"/v1/sessions/{sid}"),
        client.post(f"/v1/sessions/{sid}/feed", json={"text": "a"}),
        client.post(f"/v1/sessions/{sid}/reset"),
        client.delete(f"/v1/sessions/{sid}"),
    ):
        assert_error(response, 404, "session_not_found")


def test_split_feeds_equal_whole_and_session_equals_stateless(client: httpx.Client) -> None:
    text = "shares of the bank fell sharply on friday"
    whole = client.post("/v1/sessions", json={}).json()["session_id"]
    split = client.post("/v1/sessions", json={}).json()["session_id"]
    fed = client.post(f"/v1/sessions/{whole}/feed", json={"text": text, "k": 10}).json()
    total = 0.0
    for word in text.split():
        step = client.post(f"/v1/sessions/{split}/feed", json={"text": word, "k": 10}).json()
        total += step["logprob"]
    assert abs(total - fed["logprob"]) < 1e-4
    assert [p["word"] for p in step["predictions"]] == [p["word"] for p in fed["predictions"]]
    stateless = client.post("/v1/predict", json={"text": text, "k": 10}).json()
    for a, b in zip(stateless["predictions"], fed["predictions"], strict=True):
        assert a["word"] == b["word"] and abs(a["logprob"] - b["logprob"]) < 1e-5
    score = client.post("/v1/score", json={"text": text}).json()
    assert abs(score["logprob"] - fed["logprob"]) < 1e-4


def test_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 16


def test_openapi_declares_errors(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/v1/predict"]["post"]
    assert {"422", "429", "503", "504", "413"} <= set(predict["responses"])
    feed = schema["paths"]["/v1/sessions/{session_id}/feed"]["post"]
    assert "404" in feed["responses"]
