"""``POST /v1/completions`` and ``GET /v1/models`` through the real ``openai`` client,
against a real server (tiny random model): the answers agree with the contract's own
routes (greedy text = ``/v1/generate``, log-probs = ``/v1/score``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

from service.engine.results import join_words  # noqa: E402
from tests.serverproc import running_server  # noqa: E402

pytestmark = pytest.mark.integration
PROMPT = "the company said"


@pytest.fixture(scope="module")
def oai(server: Any) -> Any:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


def _model(client: httpx.Client) -> str:
    return client.get("/v1/models").json()["id"]


def test_models_list_is_openai_shaped_and_keeps_the_card(oai: Any, client: httpx.Client) -> None:
    models = oai.models.list()
    card = client.get("/v1/models").json()
    assert [m.id for m in models.data] == [card["id"]]
    assert models.data[0].object == "model" and models.data[0].owned_by
    assert card["object"] == "list" and card["vocab_size"] == 10000
    assert models.data[0].model_extra["vocab_size"] == 10000


def test_greedy_completion_equals_generate(oai: Any, client: httpx.Client) -> None:
    done = oai.completions.create(
        model=_model(client), prompt=PROMPT, max_tokens=6, temperature=0, user="u1"
    )
    expected = client.post(
        "/v1/generate", json={"text": PROMPT, "max_tokens": 6, "temperature": 0}
    ).json()
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    # OpenAI's text joins the words with spaces (its text_offset counts through them);
    # /v1/generate's text is the detokenised display text of the same words.
    assert done.choices[0].text == join_words(expected["tokens"]).removesuffix("\n")
    assert done.choices[0].finish_reason in ("length", "stop")
    assert done.usage.prompt_tokens == 3
    assert done.usage.completion_tokens == len(expected["tokens"])
    assert done.choices[0].logprobs is None


def test_stream_chunks_add_up_to_the_completion(oai: Any, client: httpx.Client) -> None:
    kwargs: dict[str, Any] = {"model": _model(client), "prompt": PROMPT, "max_tokens": 8}
    whole = oai.completions.create(**kwargs, temperature=0, extra_body={"ignore_eos": True})
    chunks = list(
        oai.completions.create(
            **kwargs,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].usage.prompt_tokens == 3


def test_logprobs_agree_with_score(oai: Any, client: httpx.Client) -> None:
    done = oai.completions.create(
        model=_model(client),
        prompt=PROMPT,
        max_tokens=5,
        seed=7,
        logprobs=3,
        extra_body={"ignore_eos": True},
    )
    choice = done.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    scored = client.post("/v1/score", json={"text": f"{PROMPT} {' '.join(lp.tokens)}"}).json()
    for mine, theirs in zip(lp.token_logprobs, scored["token_logprobs"][3:], strict=True):
        assert math.isclose(mine, theirs, abs_tol=1e-4)
    for token, logprob, top, offset in zip(
        lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True
    ):
        assert choice.text[offset : offset + len(token)] == token
        assert top[token] == logprob and 3 <= len(top) <= 4
        best = sorted(top.values(), reverse=True)[:3]
        assert all(value <= best[0] + 1e-6 for value in top.values()) and logprob <= best[0]


def test_echo_with_no_new_words_sums_to_score(oai: Any, client: httpx.Client) -> None:
    done = oai.completions.create(
        model=_model(client), prompt=PROMPT, max_tokens=0, echo=True, logprobs=2
    )
    choice = done.choices[0]
    lp = choice.logprobs
    assert choice.text == PROMPT and done.usage.completion_tokens == 0
    assert lp.tokens == ["<eos>", "the", "company", "said"]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    scored = client.post("/v1/score", json={"text": PROMPT}).json()
    assert math.isclose(sum(lp.token_logprobs[1:]), scored["logprob"], abs_tol=1e-4)
    assert all(len(top) in (2, 3) for top in lp.top_logprobs[1:])
    assert lp.text_offset == [0, 0, 4, 12]


def test_seeded_choices_are_deterministic_and_ordered(oai: Any, client: httpx.Client) -> None:
    kwargs: dict[str, Any] = {
        "model": _model(client),
        "prompt": ["the company", "it was"],
        "max_tokens": 6,
        "n": 3,
        "seed": 42,
        "temperature": 1.5,
        "extra_body": {"ignore_eos": True},
    }
    first = oai.completions.create(**kwargs)
    second = oai.completions.create(**kwargs)
    assert [c.index for c in first.choices] == list(range(6))
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len({c.text for c in first.choices[:3]}) > 1  # the n choices differ
    assert first.usage.prompt_tokens == 4 and first.usage.completion_tokens == 36


def test_stop_string_ends_the_choice_before_it(oai: Any, client: httpx.Client) -> None:
    kwargs: dict[str, Any] = {
        "model": _model(client),
        "prompt": PROMPT,
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    text = oai.completions.create(**kwargs).choices[0].text
    words = text.split(" ")
    stop = " " + words[3][:2]
    cut = oai.completions.create(**kwargs, stop=[stop, "never-there"]).choices[0]
    assert cut.text == text[: text.index(stop)] and cut.finish_reason == "stop"
    streamed = list(oai.completions.create(**kwargs, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == cut.text
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_bad_request_in_openai_shape(oai: Any, server: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model="m", prompt="a", temperature=5)
    assert caught.value.status_code == 400
    body = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "n": 0}).json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == "n"
    # the contract's routes keep the contract's shape
    other = httpx.post(server.url + "/v1/generate", json={"max_tokens": -1})
    assert other.status_code == 422 and set(other.json()["error"]) == {"code", "message", "details"}


def test_keys_are_checked_in_openai_shape(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_API_KEYS": "key-a"}
    with running_server(env, tmp_path / "auth.log") as server:
        base = server.url + "/v1"
        wrong = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="m", prompt="a")
        body = httpx.post(base + "/completions", json={"prompt": "a"}).json()
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["param"] is None
        with openai.OpenAI(base_url=base, api_key="key-a", max_retries=0) as right:
            assert right.completions.create(model="m", prompt="a", max_tokens=2).choices
            assert right.models.list().data


def test_streamed_text_never_shows_part_of_a_stop_string() -> None:
    from service.api.completions import Choice
    from service.engine.client import FinishReason, GeneratedWord

    choice = Choice(0, ["b c", "zz"], with_logprobs=True, skip_eos=True)
    sent: list[str] = []
    released: list[str] = []
    for index, word in enumerate(["a", "b", "x", "b", "c", "d"]):
        choice.add(GeneratedWord(word, index, None, -1.0, []))
        text, words = choice.release()
        sent.append(text)
        released.extend(w.word for w in words)
        if choice.finish_reason:
            break
    choice.finish(FinishReason.LENGTH)
    assert sent == ["a", "", " b x", "", " "]  # a "b" waits until it cannot start "b c"
    assert "".join(sent) == choice.text == "a b x "
    assert choice.finish_reason == "stop" and choice.completion_tokens == 5
    assert [w.word for w in choice.words] == released == ["a", "b", "x"]
