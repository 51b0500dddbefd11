"""``lstm_serve.client`` against real servers: every method, typed errors, retries, resume."""

from __future__ import annotations

import asyncio
import email.utils
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lstm_serve.client import (
    ERRORS,
    APIError,
    AsyncClient,
    Client,
    GeneratedWord,
    Generation,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    RetryPolicy,
    SessionBusy,
    SessionNotFound,
    StreamDone,
    StreamToken,
    Timeout,
    Unauthorized,
    detokenize,
)
from lstm_serve.client.transport import generation_event, retry_after_s, sse_data, stream_url
from tests.conftest import ROOT
from tests.serverproc import ServerProcess, start_server

KEYS = ("key-one", "key-two")


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def guarded_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """API keys on, and room for one session only (the second gets 429 overloaded)."""
    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_API_KEYS": ",".join(KEYS),
        "LSTM_SERVE_MAX_SESSIONS": "1",
    }
    server = start_server(env, tmp_path_factory.mktemp("guarded") / "server.log")
    try:
        yield server
    finally:
        server.stop()


# ---- no server needed ----------------------------------------------------------------
def test_client_imports_neither_torch_nor_the_server() -> None:
    code = (
        "import sys, lstm_serve.client as c; print(sorted({'torch', 'service'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_one_error_class_per_contract_code() -> None:
    contract = {
        "invalid_request": 422,
        "unauthorized": 401,
        "session_not_found": 404,
        "session_busy": 409,
        "session_incompatible": 409,
        "payload_too_large": 413,
        "overloaded": 429,
        "not_ready": 503,
        "timeout": 504,
    }
    assert {code: kind.status for code, kind in ERRORS.items()} == contract
    assert all(issubclass(kind, APIError) and kind.code == code for code, kind in ERRORS.items())


def test_transport_helpers() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_s(answer("2")) == 2.0
    in_3_s = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.0 < (retry_after_s(answer(in_3_s)) or 0) <= 3.0
    assert retry_after_s(answer("soon")) is None
    assert RetryPolicy(max_wait_s=5).wait_s(Overloaded("x", retry_after_s=60)) == 5
    events = list(sse_data(["data: {}", "", ": comment", "data: a", "data: b", "", "data: c"]))
    assert events == ["{}", "a\nb", "c"]
    with pytest.raises(Timeout) as late:  # an error event after the stream began
        generation_event('{"error": {"code": "timeout", "message": "late", "details": null}}')
    assert (late.value.status, late.value.message) == (504, "late")
    assert stream_url("https://h:1/base/", "s 1", "k") == (
        "wss://h:1/base/v1/stream?session_id=s+1&access_token=k"
    )
    assert stream_url("http://h", None, cache=True) == "ws://h/v1/stream?cache=true"


# ---- stateless -----------------------------------------------------------------------
@pytest.mark.integration
def test_predict_score_generate(api: Client) -> None:
    predicted = api.predict("the clouds are in the", k=3)
    assert predicted.tokens == ["the", "clouds", "are", "in", "the"]
    probabilities = [p.probability for p in predicted.predictions]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert all(
        math.isclose(math.log(p.probability), p.logprob, abs_tol=1e-5)
        for p in predicted.predictions
    )
    assert api.model_card()["id"] == predicted.model

    scored = api.score("the company said it expects")
    assert len(scored.token_logprobs) == len(scored.tokens) == 5
    assert math.isclose(sum(scored.token_logprobs), scored.logprob, rel_tol=1e-5)
    assert scored.perplexity is not None and scored.perplexity > 1

    greedy = api.generate("the market", max_tokens=6, temperature=0, stop_at_eos=False)
    assert greedy.finish_reason == "length" and len(greedy.tokens) == 6
    assert greedy.prompt_tokens == ["the", "market"]
    assert greedy.display_text == detokenize(greedy.tokens)
    seeded = [api.generate("the market", max_tokens=8, seed=3).tokens for _ in range(2)]
    assert seeded[0] == seeded[1]


@pytest.mark.integration
def test_generate_stream_yields_words_then_the_generation(api: Client) -> None:
    events = list(api.generate_stream("the market", max_tokens=7, seed=11, stop_at_eos=False))
    words, final = events[:-1], events[-1]
    assert all(isinstance(e, GeneratedWord) for e in words)
    assert [e.index for e in words] == list(range(7))  # type: ignore[union-attr]
    assert isinstance(final, Generation) and final.finish_reason == "length"
    assert final.tokens == [e.word for e in words]  # type: ignore[union-attr]
    plain = api.generate("the market", max_tokens=7, seed=11, stop_at_eos=False)
    assert plain.tokens == final.tokens


# ---- sessions ------------------------------------------------------------------------
@pytest.mark.integration
def test_session_object(api: Client) -> None:
    with api.session("the company", k=2) as session:
        assert session.position == 2 and len(session.last.predictions) == 2  # type: ignore[union-attr]
        step = session.feed("said it", k=4)
        assert (step.session_id, step.position, step.tokens) == (session.id, 4, ["said", "it"])
        assert step.logprob is not None and step.logprob < 0 and len(step.predictions) == 4
        reference = api.predict("the company said it", k=4)
        assert [p.word for p in step.predictions] == [p.word for p in reference.predictions]
        assert session.info().position == 4
        assert api.resume_session(session.id).position == 4
        assert session.reset().position == 0 and session.position == 0
    with pytest.raises(SessionNotFound) as missing:
        api.resume_session(session.id)
    assert (missing.value.status, missing.value.code) == (404, "session_not_found")
    assert session.id in missing.value.message


@pytest.mark.integration
def test_session_deleted_early_still_exits_cleanly(api: Client) -> None:
    with api.session() as session:
        session.delete()
    with pytest.raises(SessionNotFound):
        session.feed("again")


@pytest.mark.integration
def test_typed_errors(api: Client) -> None:
    with pytest.raises(InvalidRequest) as invalid:
        api.predict("the", k=0)
    assert invalid.value.status == 422 and invalid.value.details  # pydantic's problems
    with pytest.raises(InvalidRequest):
        api.generate("the", top_p=0)
    with pytest.raises(PayloadTooLarge) as large:
        api.score("word " * 1000)  # the fixture allows 2000 characters
    assert large.value.status == 413
    with pytest.raises(SessionNotFound):
        api.resume_session("no-such-session")
    with pytest.raises(InvalidRequest, match="no continuous cache"):  # the tiny test model
        api.session("the", cache=True)
    with pytest.raises(InvalidRequest, match="no continuous cache"):
        api.stream(cache=True)


# ---- WebSocket -----------------------------------------------------------------------
@pytest.mark.integration
def test_stream_feed_generate_reset_close(api: Client) -> None:
    with api.stream() as stream:
        assert stream.position == 0 and stream.model == api.model_card()["id"]
        step = stream.feed("the company said", k=3)
        assert (step.session_id, step.position) == (stream.session_id, 3)
        assert len(step.predictions) == 3 and step.logprob is not None
        events = list(stream.generate(max_tokens=4, temperature=0, stop_at_eos=False))
        tokens, done = events[:-1], events[-1]
        assert [t.position for t in tokens] == [4, 5, 6, 7]  # type: ignore[union-attr]
        assert isinstance(done, StreamDone) and done.finish_reason == "length"
        assert done.tokens == [t.word for t in tokens] and done.position == 7  # type: ignore[union-attr]
        assert done.display_text == detokenize(done.tokens)
        assert api.resume_session(stream.session_id).position == 7
        with pytest.raises(InvalidRequest):  # a bad message: the stream stays open
            stream.feed("x", k=0)
        assert stream.reset() == 0
        assert stream.feed("the").position == 1
        session_id = stream.session_id
    with pytest.raises(SessionNotFound):  # leaving the block closed it: session deleted
        api.resume_session(session_id)


@pytest.mark.integration
def test_stream_resume_and_busy(api: Client) -> None:
    first = api.stream()
    first.feed("the bank said")
    with pytest.raises(SessionBusy) as busy:
        api.stream(first.session_id)
    assert busy.value.status == 409
    first.disconnect()  # the session stays
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect asynchronously
        try:
            resumed = api.stream(first.session_id)
            break
        except SessionBusy:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with resumed:
        assert resumed.session_id == first.session_id and resumed.position == 3
        step = resumed.feed("its profit", k=5)
        reference = api.predict("the bank said its profit", k=5)
        assert [p.word for p in step.predictions] == [p.word for p in reference.predictions]
    with pytest.raises(SessionNotFound):
        api.stream("no-such-session")


@pytest.mark.integration
def test_leaving_a_generation_early_cancels_it(api: Client) -> None:
    with api.stream() as stream:
        stream.feed("the")
        received = []
        for event in stream.generate(max_tokens=150, stop_at_eos=False, seed=1):
            assert isinstance(event, StreamToken)
            received.append(event)
            if len(received) == 3:
                break
        step = stream.feed("market")  # answers of the cancelled generation are skipped
        assert step.tokens == ["market"]
        position = api.resume_session(stream.session_id).position
        assert step.position == position and 1 + 3 + 1 <= position < 1 + 150 + 1


# ---- asyncio -------------------------------------------------------------------------
@pytest.mark.integration
def test_async_client(server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncClient(server.url) as api:
            assert (await api.predict("the", k=2)).tokens == ["the"]
            assert (await api.score("the company")).tokens == ["the", "company"]
            generated = await api.generate("the", max_tokens=5, seed=2, stop_at_eos=False)
            events = [
                e async for e in api.generate_stream("the", max_tokens=5, seed=2, stop_at_eos=False)
            ]
            assert isinstance(events[-1], Generation) and events[-1].tokens == generated.tokens
            async with api.session("the company") as session:
                assert (await session.feed("said")).position == 3
                assert (await session.info()).position == 3
                assert (await session.reset()).position == 0
            with pytest.raises(SessionNotFound):
                await api.resume_session(session.id)
            created = await api.session()
            await created.delete()
            stream = await api.stream()
            async with stream:
                assert (await stream.feed("the company")).position == 2
                words = [e async for e in stream.generate(max_tokens=3, stop_at_eos=False)]
                assert isinstance(words[-1], StreamDone) and words[-1].position == 5
                await stream.disconnect()
            async with await api.stream(stream.session_id) as resumed:
                assert resumed.position == 5
                assert await resumed.reset() == 0
            with pytest.raises(SessionNotFound):
                await api.resume_session(stream.session_id)

    asyncio.run(main())


# ---- keys and overload ---------------------------------------------------------------
@pytest.mark.integration
def test_bearer_keys(guarded_server: ServerProcess) -> None:
    with Client(guarded_server.url) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.predict("the")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with Client(guarded_server.url, api_key="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.stream()
    with (
        Client(guarded_server.url, api_key=KEYS[0]) as one,
        Client(guarded_server.url, api_key=KEYS[1]) as two,
    ):
        assert one.predict("the", k=1).tokens == ["the"]
        with one.session("the") as session:
            with pytest.raises(SessionNotFound):  # a session is visible to its key only
                two.resume_session(session.id)
            assert one.resume_session(session.id).position == 1


@pytest.mark.integration
def test_overloaded_is_retried_after_retry_after_then_raised(
    guarded_server: ServerProcess,
) -> None:
    attempts: list[float] = []

    def count(request: httpx.Request) -> None:
        if request.url.path == "/v1/sessions":
            attempts.append(time.monotonic())

    http = httpx.Client(base_url=guarded_server.url, event_hooks={"request": [count]})
    retry = RetryPolicy(max_retries=2)
    with Client(guarded_server.url, api_key=KEYS[0], http=http, retry=retry) as api:
        with api.session() as holder:  # the server's only session
            started = time.monotonic()
            with pytest.raises(Overloaded) as full:
                api.session()
            assert len(attempts) == 1 + 1 + 2  # the holder, then three tries
            assert full.value.status == 429 and full.value.retry_after_s is not None
            waited = time.monotonic() - started
            assert waited >= 2 * full.value.retry_after_s * 0.9  # Retry-After was honoured

            attempts.clear()
            threading.Timer(0.3, holder.delete).start()  # room again during the first wait
            with api.session("the") as second:
                assert second.position == 1
            assert len(attempts) == 2
        # A stream's open is refused the same way (no retry: the socket is closed).
        with pytest.raises(Overloaded), api.session(), api.stream():
            pass
    http.close()
