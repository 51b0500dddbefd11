"""Recurrent state as a product (issue 14): fork, rewind, export / import.

Invariants: a fork and its source evolve independently, each equal to a fresh session fed
the same words; rewinding n words then feeding them again gives the same predictions; an
exported state imported into another engine gives the same next predictions; tampered,
truncated, foreign-key and other-model tokens are refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.engine.client import GenerationRequest
from service.engine.core import EngineConfig
from service.engine.errors import InvalidRequest, SessionBusy, SessionIncompatible
from service.engine.history import History
from service.engine.metrics import EngineMetrics
from service.engine.prefix_cache import MAX_CACHED_WORDS, PrefixCache
from service.engine.results import SessionStep
from service.engine.state_token import ModelShape, StateToken, decode, encode
from tests.engine_harness import LocalEngine as Engine
from tests.engine_harness import run_engine, start_local
from tests.redisproc import REDIS_SERVER, running_redis

WORDS = "the company said it expects sales to rise sharply next year".split()
TOL = 1e-5


def _same(a: SessionStep, b: SessionStep) -> None:
    assert [p.word for p in a.predictions] == [p.word for p in b.predictions]
    for x, y in zip(a.predictions, b.predictions, strict=True):
        assert abs(x.logprob - y.logprob) <= TOL
    assert a.position == b.position


async def _fresh(engine: Engine, text: str) -> SessionStep:
    return await engine.create_session(text, k=10)


def test_fork_branches_are_independent(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        client = engine.client
        source = await engine.create_session("the company said", k=10)
        fork = await client.fork_session(source.session_id, k=10)
        assert fork.session_id != source.session_id and fork.position == source.position
        _same(fork, await _fresh(engine, "the company said"))
        a = await engine.feed(source.session_id, "it expects", k=10)
        b = await engine.feed(fork.session_id, "shares fell", k=10)
        _same(a, await _fresh(engine, "the company said it expects"))
        _same(b, await _fresh(engine, "the company said shares fell"))
        # many forks at once, batched into few steps, each equal to the source
        forks = await asyncio.gather(*(client.fork_session(source.session_id) for _ in range(8)))
        assert len({f.session_id for f in forks}) == 8
        for f in forks:
            assert [p.word for p in f.predictions] == [p.word for p in a.predictions][:5]
        assert engine.metrics.session_state_ops.labels("fork")._value.get() == 9

    run_engine(tiny_checkpoint, scenario)


def test_rewind_then_refeed_is_identical(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        client = engine.client
        session = await engine.create_session(WORDS[0], k=10)
        steps = [session]
        for word in WORDS[1:6]:
            steps.append(await engine.feed(session.session_id, word, k=10))
        multi = await engine.feed(session.session_id, " ".join(WORDS[6:]), k=10)
        position = multi.position
        for n in (1, 3, len(WORDS) - 6):  # inside the multi-word feed, and its start
            back = await client.rewind_session(session.session_id, n, k=10)
            assert back.position == position - n
            _same(back, await _fresh(engine, " ".join(WORDS[: position - n])))
            again = await engine.feed(session.session_id, " ".join(WORDS[position - n :]), k=10)
            _same(again, multi)
        back = await client.rewind_session(session.session_id, position - 2, k=10)
        _same(back, steps[1])  # word-by-word part: one state copy back
        back = await client.rewind_session(session.session_id, 2, k=10)
        assert back.position == 0
        _same(back, await _fresh(engine, ""))
        with pytest.raises(InvalidRequest, match="keeps the last 0"):
            await client.rewind_session(session.session_id, 1)

    run_engine(tiny_checkpoint, scenario)


def test_rewind_past_history_is_refused(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        session = await engine.create_session("", k=3)
        for word in WORDS:
            await engine.feed(session.session_id, word, k=3)
        with pytest.raises(InvalidRequest, match="keeps the last 4") as caught:
            await engine.client.rewind_session(session.session_id, 5)
        assert caught.value.details == {"kept_tokens": 4}
        back = await engine.client.rewind_session(session.session_id, 4, k=3)
        _same(back, await engine.create_session(" ".join(WORDS[:-4]), k=3))
        held = engine.sessions.find(session.session_id)
        assert len(held.history.slots()) <= 4

    run_engine(tiny_checkpoint, scenario, session_history=4)


def test_history_slots_are_freed(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        pool = engine.runner.pool
        before = pool.in_use
        session = await engine.create_session("the", k=1)
        for word in WORDS:
            await engine.feed(session.session_id, word, k=1)
        fork = await engine.client.fork_session(session.session_id, k=10)
        # a slot each, plus one per word fed: the fork shares the source's history states
        assert pool.in_use == before + 2 + len(WORDS)
        await engine.remove_session(session.session_id)
        back = await engine.client.rewind_session(fork.session_id, 3, k=10)
        fresh = await _fresh(engine, " ".join(["the", *WORDS[:-3]]))
        _same(back, fresh)
        await engine.remove_session(back.session_id)
        await engine.remove_session(fresh.session_id)
        assert pool.in_use == before

    run_engine(tiny_checkpoint, scenario)


def test_history_bytes_gauge_counts_shared_states_once(tiny_checkpoint: Path) -> None:
    """The sweeper's gauge: the source's states (one per word fed after the first) plus
    the fork's own new one, each shared state once."""

    async def scenario(engine: Engine) -> float:
        session = await engine.create_session("the", k=1)
        for word in WORDS:
            await engine.feed(session.session_id, word, k=1)
        fork = await engine.client.fork_session(session.session_id, k=1)
        await engine.feed(fork.session_id, "again", k=1)
        await asyncio.sleep(0.3)  # a few sweeps
        return engine.metrics.session_history_bytes._value.get() / engine.runner.pool.bytes_per_slot

    assert run_engine(tiny_checkpoint, scenario, session_sweep_interval_s=0.05) == len(WORDS) + 1


def test_export_import_on_a_second_engine(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        session = await engine.create_session("the company said it", k=10)
        token, position = await engine.client.export_state(session.session_id)
        assert position == session.position
        other = await start_local(engine.core.config)
        try:
            imported = await other.client.import_state(token, k=10)
            _same(imported, session)
            a = await engine.feed(session.session_id, "expects", k=10)
            b = await other.feed(imported.session_id, "expects", k=10)
            _same(a, b)
            assert abs(a.logprob - b.logprob) <= TOL
        finally:
            await other.stop()
        await _refused(engine, token)

    run_engine(tiny_checkpoint, scenario, state_key="test-key")


async def _refused(engine: Engine, token: str) -> None:
    client = engine.client
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[60] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad, message in (
        (tampered, "signature"),
        (token[:-12], "signature"),
        (token[:20], "truncated"),
        ("not base64 !!", "base64"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            await client.import_state(bad)


def test_token_checks() -> None:
    shape = ModelShape("ab" * 32, 2, 3, 3)
    state = StateToken(7, b"\0" * 24, b"\0" * 24)
    token = encode(b"k", shape, state)
    assert decode(b"k", shape, token) == state
    with pytest.raises(InvalidRequest, match="another server key"):
        decode(b"other", shape, token)
    with pytest.raises(SessionIncompatible, match="another model"):
        decode(b"k", ModelShape("cd" * 32, 2, 3, 3), token)
    nan = StateToken(7, b"\0" * 20 + bytes.fromhex("0000c07f"), b"\0" * 24)
    with pytest.raises(InvalidRequest, match="non-finite"):
        decode(b"k", shape, encode(b"k", shape, nan))


def test_fork_of_a_busy_session_is_refused(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> Any:
        session = await engine.create_session("the", k=1)
        feed = asyncio.create_task(engine.feed(session.session_id, " ".join(WORDS * 20)))
        await asyncio.sleep(0)
        results = await asyncio.gather(
            engine.client.fork_session(session.session_id), return_exceptions=True
        )
        await feed
        return results

    results = run_engine(tiny_checkpoint, scenario)
    assert all(isinstance(r, SessionBusy | SessionStep) for r in results)


def test_history_bookkeeping() -> None:
    freed: list[int] = []
    history = History()
    history.restart([5], 3, freed.append)
    for position, slot in ((1, 10), (2, 11), (3, 12), (4, 13)):
        history.record(position, slot, [position], 3, freed.append)
    assert history.kept(5, 3) == 3 and freed == [10]
    slot, refeed = history.plan(3)
    assert (slot, refeed) == (12, [])
    history.truncate(3, freed.append)
    assert freed == [10, 12, 13] and history.kept(3, 3) == 1


def test_token_of_another_model_is_incompatible(
    tiny_checkpoint: Path, tmp_path: Path, ptb_vocabulary: Any
) -> None:
    from tests.conftest import make_checkpoint

    other_model = make_checkpoint(tmp_path / "other", ptb_vocabulary, seed=1)

    async def scenario(engine: Engine) -> None:
        session = await engine.create_session("the company", k=3)
        token, _ = await engine.client.export_state(session.session_id)
        other = await start_local(replace(engine.core.config, model_path=other_model))
        try:
            with pytest.raises(SessionIncompatible, match="another model"):
                await other.client.import_state(token)
        finally:
            await other.stop()

    run_engine(tiny_checkpoint, scenario, state_key="shared")


# ---- the real server (HTTP and WebSocket) ----------------------------------------------
def _words(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(p["word"], p["logprob"]) for p in answer["predictions"]]


def _same_http(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert [w for w, _ in _words(a)] == [w for w, _ in _words(b)]
    assert all(abs(x - y) <= TOL for (_, x), (_, y) in zip(_words(a), _words(b), strict=True))
    assert a["position"] == b["position"]


@pytest.mark.integration
def test_http_fork_rewind_state(server: Any, client: httpx.Client) -> None:
    created = client.post("/v1/sessions", json={"text": "the company", "k": 5}).json()
    sid = created["session_id"]
    for word in ("said", "it", "expects"):
        client.post(f"/v1/sessions/{sid}/feed", json={"text": word, "k": 5})
    fork = client.post(f"/v1/sessions/{sid}/fork")
    assert fork.status_code == 201
    assert set(fork.json()) == set(created) and fork.json()["position"] == 5
    fork_id = fork.json()["session_id"]
    a = client.post(f"/v1/sessions/{sid}/feed", json={"text": "sales"}).json()
    b = client.post(f"/v1/sessions/{fork_id}/feed", json={"text": "shares"}).json()
    fresh = client.post("/v1/sessions", json={"text": "the company said it expects sales"})
    _same_http(a, fresh.json())
    assert b["tokens"] == ["shares"] and b["position"] == 6
    back = client.post(f"/v1/sessions/{sid}/rewind", json={"tokens": 2, "k": 5})
    assert back.status_code == 200 and back.json()["position"] == 4
    _same_http(
        back.json(), client.post("/v1/sessions", json={"text": "the company said it"}).json()
    )
    too_far = client.post(f"/v1/sessions/{sid}/rewind", json={"tokens": 40})
    assert too_far.status_code == 422
    assert too_far.json()["error"]["code"] == "invalid_request"
    assert "keeps the last 4" in too_far.json()["error"]["message"]
    state = client.get(f"/v1/sessions/{sid}/state")
    assert state.status_code == 200 and state.json()["position"] == 4
    imported = client.post("/v1/sessions", json={"state": state.json()["state"], "k": 5})
    assert imported.status_code == 201
    _same_http(imported.json(), back.json())
    token = state.json()["state"]
    for body in ({"state": token[:-8] + "AAAAAAAA"}, {"state": "x"}, {"state": token, "text": "a"}):
        refused = client.post("/v1/sessions", json=body)
        assert refused.status_code == 422, body
    assert client.post("/v1/sessions/nope/fork").status_code == 404
    assert client.get("/v1/sessions/nope/state").status_code == 404


@pytest.mark.integration
def test_ws_fork_and_rewind(server: Any, client: httpx.Client) -> None:
    from websockets.sync.client import connect

    with connect(f"{server.ws_url}/v1/stream") as ws:
        ready = json.loads(ws.recv(timeout=20))
        ws.send(json.dumps({"type": "feed", "text": "the company said", "k": 3}))
        fed = json.loads(ws.recv(timeout=20))
        ws.send(json.dumps({"type": "fork", "id": 1}))
        forked = json.loads(ws.recv(timeout=20))
        assert forked["type"] == "forked" and forked["id"] == 1 and forked["position"] == 3
        assert forked["session_id"] != ready["session_id"]
        ws.send(json.dumps({"type": "feed", "text": "it", "k": 3}))
        json.loads(ws.recv(timeout=20))
        ws.send(json.dumps({"type": "rewind", "tokens": 1, "k": 3, "id": 2}))
        rewound = json.loads(ws.recv(timeout=20))
        assert rewound["type"] == "ready" and rewound["id"] == 2
        assert rewound["position"] == 3 and rewound["session_id"] == ready["session_id"]
        _same_http(rewound, fed)
        ws.send(json.dumps({"type": "rewind", "tokens": 9}))
        assert json.loads(ws.recv(timeout=20))["type"] == "error"
    info = client.get(f"/v1/sessions/{forked['session_id']}")
    assert info.status_code == 200 and info.json()["position"] == 3


@pytest.mark.integration
def test_export_import_across_servers(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tests.serverproc import running_server

    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_STATE_KEY": "k1"}
    with running_server(env, tmp_path / "a.log") as a, running_server(env, tmp_path / "b.log") as b:
        with httpx.Client(base_url=a.url, timeout=30) as first:
            sid = first.post("/v1/sessions", json={"text": "the company said"}).json()["session_id"]
            token = first.get(f"/v1/sessions/{sid}/state").json()["state"]
            expected = first.post(f"/v1/sessions/{sid}/feed", json={"text": "it"}).json()
        with httpx.Client(base_url=b.url, timeout=30) as second:
            made = second.post("/v1/sessions", json={"state": token})
            assert made.status_code == 201
            other = made.json()["session_id"]
            got = second.post(f"/v1/sessions/{other}/feed", json={"text": "it"}).json()
    _same_http(got, expected)
    assert abs(got["logprob"] - expected["logprob"]) <= TOL


# ---- prefix-state cache ---------------------------------------------------------------
def _random_texts(count: int, seed: int) -> list[str]:
    """Growing prefixes of random word sequences, shuffled (autocomplete-like, with
    shared starts)."""
    rng = random.Random(seed)
    vocabulary = WORDS + "shares of the bank fell on friday after report".split()
    texts: list[str] = []
    for _ in range(count):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        texts.extend(" ".join(words[:n]) for n in range(1, len(words) + 1))
    rng.shuffle(texts)
    return texts


def _predictions_of(texts: list[str], batched: bool) -> Any:
    async def scenario(engine: Engine) -> list[SessionStep]:
        if batched:
            return list(await asyncio.gather(*(engine.predict(t, k=10) for t in texts)))
        return [await engine.predict(t, k=10) for t in texts]

    return scenario


@pytest.mark.parametrize("batched", [False, True])
def test_prefix_cache_never_changes_an_answer(tiny_checkpoint: Path, batched: bool) -> None:
    texts = _random_texts(12, seed=3)
    expected = run_engine(tiny_checkpoint, _predictions_of(texts, batched))
    for budget in (1 << 20, 256 * 4):  # roomy, and a few slots (evicting all the time)
        got = run_engine(
            tiny_checkpoint, _predictions_of(texts, batched), prefix_cache_bytes=budget
        )
        for a, b in zip(got, expected, strict=True):
            assert [p.word for p in a.predictions] == [p.word for p in b.predictions]
            for x, y in zip(a.predictions, b.predictions, strict=True):
                assert abs(x.logprob - y.logprob) <= TOL


def test_prefix_cache_hits_and_evicts(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        metrics, pool, cache = engine.metrics, engine.runner.pool, engine.core.prefix_cache
        words = WORDS[:8]
        for n in range(1, len(words) + 1):
            await engine.predict(" ".join(words[:n]), k=3)
        assert metrics.prefix_cache_requests.labels("hit")._value.get() == len(words) - 1
        assert metrics.prefix_cache_tokens_saved._value.get() == sum(range(1, len(words)))
        assert len(cache) == 3 and metrics.prefix_cache_evictions._value.get() == len(words) - 3
        assert metrics.prefix_cache_bytes._value.get() == 3 * pool.bytes_per_slot
        assert pool.in_use == len(cache)  # the request slots are all back
        await engine.predict(" ".join(words), k=3)  # cached whole: no model tokens
        assert metrics.prefix_cache_tokens_saved._value.get() == sum(range(1, len(words) + 1))

    run_engine(tiny_checkpoint, scenario, prefix_cache_bytes=3 * 256)


@pytest.mark.parametrize("batched", [False, True])
def test_prefix_cache_scores_are_unchanged(tiny_checkpoint: Path, batched: bool) -> None:
    """Scores use entries filed by scores (with their words' log-probs), never a predict's
    (which has none), and every score equals the one without the cache."""
    texts = _random_texts(10, seed=7)

    async def scenario(engine: Engine) -> tuple[list[list[float]], float]:
        await asyncio.gather(*(engine.predict(t, k=3) for t in texts[::3]))  # log-prob-less
        if batched:
            scores = await asyncio.gather(*(engine.score(t) for t in texts))
        else:
            scores = [await engine.score(t) for t in texts]
        saved = engine.metrics.prefix_cache_tokens_saved._value.get()
        return [list(s.token_logprobs) for s in scores], saved

    expected, _ = run_engine(tiny_checkpoint, scenario)
    for budget in (1 << 20, 256 * 4):
        got, saved = run_engine(tiny_checkpoint, scenario, prefix_cache_bytes=budget)
        assert batched or budget < 1 << 20 or saved > 0  # (a batch looks up before filing)
        for a, b in zip(got, expected, strict=True):
            assert len(a) == len(b)
            assert max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0) <= TOL


def test_prefix_cache_files_states_inside_long_prompts(tiny_checkpoint: Path) -> None:
    """A 150-word prompt files states at words 64 and 128 too: a text sharing only its
    first 130 words starts at word 128, and every answer equals the one without a cache."""
    rng = random.Random(11)
    vocabulary = [*WORDS, *"shares of the bank fell on friday after report".split()]
    long = [rng.choice(vocabulary) for _ in range(150)]
    other = [*long[:130], *(rng.choice(vocabulary) for _ in range(20))]
    texts = [" ".join(long), " ".join(other), " ".join(long[:70])]

    async def scenario(engine: Engine) -> tuple[list[Any], list[float]]:
        saved = []
        answers: list[Any] = []
        for text in texts:
            answers.append(await engine.predict(text, k=5))
            answers.append((await engine.score(text)).token_logprobs)
            saved.append(engine.metrics.prefix_cache_tokens_saved._value.get())
        return answers, saved

    expected, _ = run_engine(tiny_checkpoint, scenario)
    got, saved = run_engine(tiny_checkpoint, scenario, prefix_cache_bytes=1 << 20)
    # The first score cannot use the predict's states (no log-probs) but gives them its
    # own; then the other text's predict and score start at word 128, the third's at 64.
    assert saved == [0, 128 + 128, 256 + 64 + 64]
    for a, b in zip(got, expected, strict=True):
        if isinstance(a, list):
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= TOL
        else:
            assert [p.word for p in a.predictions] == [p.word for p in b.predictions]


def test_prefix_cache_gives_back_everything_it_reserved() -> None:
    """Reserving states along one path and abandoning them (a request refused after its
    lookup) leaves an empty trie and every slot free; long prompts stop at the cap."""
    free: list[int] = []
    slots = iter(range(1000))
    cache = PrefixCache(1 << 20, 100, lambda: next(slots), free.append, EngineMetrics())
    ids = list(range(300))
    reserved = cache.reserve(ids, [64, 128, 192, 256, 300])
    assert [p for p, _ in reserved] == [64, 128, 192, 256, 300]
    cache.abandon(ids, reserved)
    assert sorted(free) == sorted(s for _, s in reserved) and not cache._root.children
    long = list(range(MAX_CACHED_WORDS + 500))
    cache.commit(long, cache.reserve(long, [64, MAX_CACHED_WORDS]), None)
    assert cache.lookup(long) == (MAX_CACHED_WORDS, cache.lookup(long)[1]) and len(cache) == 2


def test_prefix_cache_generations_unchanged(tiny_checkpoint: Path) -> None:
    texts = _random_texts(4, seed=5)[:20]

    async def scenario(engine: Engine) -> tuple[list[list[str]], float]:
        out = []
        for i, text in enumerate(texts):
            request = GenerationRequest(max_tokens=6, seed=i, stop_at_eos=False)
            out.append([w.word for w in await (await engine.generate(text, request)).collect()])
        return out, engine.metrics.prefix_cache_tokens_saved._value.get()

    expected, _ = run_engine(tiny_checkpoint, scenario)
    got, saved = run_engine(tiny_checkpoint, scenario, prefix_cache_bytes=1 << 20)
    assert got == expected and saved > 0


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_forks_rewinds_imports_are_stored(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Acked = stored: another engine on the same Redis resumes each result exactly."""

    async def scenario(redis_url: str) -> None:
        config = EngineConfig(tiny_checkpoint, device="cpu", session_store=redis_url, state_key="s")
        a, b = await start_local(config), await start_local(config)
        try:
            sid = (await a.create_session("the company said it", k=5)).session_id
            fork = await a.client.fork_session(sid, k=5)
            back = await a.client.rewind_session(sid, 2, k=5)
            token, _ = await a.client.export_state(fork.session_id)
            imported = await a.client.import_state(token, k=5)
            for made, text in ((fork, "the company said it"), (back, "the company")):
                _same(await b.feed(made.session_id, "", k=5), made)
                _same(
                    await b.feed(made.session_id, "sales", k=5),
                    await a.create_session(f"{text} sales", k=5),
                )
            _same(await b.feed(imported.session_id, "", k=5), imported)
        finally:
            await a.stop()
            await b.stop()

    with running_redis(tmp_path) as redis:
        asyncio.run(scenario(redis.url))


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_history_follows_the_session_to_another_replica(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Acked = stored for the rewind history too: another engine on the same Redis rewinds
    a session (and a fork of it) fed word by word elsewhere, as far back as the first."""

    async def scenario(redis_url: str) -> None:
        config = EngineConfig(tiny_checkpoint, device="cpu", session_store=redis_url)
        a, b = await start_local(config), await start_local(config)
        try:
            sid = (await a.create_session("the", k=5)).session_id
            for word in WORDS[1:6]:  # "company said it expects sales"
                await a.feed(sid, word, k=5)
            await a.feed(sid, "to rise", k=5)  # a two-word feed: a rewind into it re-feeds
            fork = await a.client.fork_session(sid, k=5)
            back = await b.client.rewind_session(sid, 1, k=5)  # into the two-word feed
            _same(back, await a.create_session(" ".join(WORDS[:7]), k=5))
            back = await b.client.rewind_session(fork.session_id, 7, k=5)
            _same(back, await a.create_session("the", k=5))
            with pytest.raises(InvalidRequest, match="keeps the last 1"):
                await b.client.rewind_session(fork.session_id, 2, k=5)
            # moved back to A, the session keeps what is left of its history
            again = await a.client.rewind_session(sid, 3, k=5)
            _same(again, await b.create_session(" ".join(WORDS[:4]), k=5))
        finally:
            await a.stop()
            await b.stop()

    with running_redis(tmp_path) as redis:
        asyncio.run(scenario(redis.url))
