"""Sessions with a continuous cache (issue 18): the server's mixture equals the offline one.

A tiny random model gets a card with cache numbers (a small window, so the ring wraps
and rewinds cross it). Invariants: per-token log-probs of a cached session, fed in chunks
of any size, equal ``models.continuous_cache.segment_log_probs`` over the same stream; a
session without a cache keeps the model's numbers; a repeated word gains probability; the
mixture is a distribution; fork, rewind, export/import and Redis carry the cache; the byte
budget holds (429 over HTTP).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from torch.nn import functional

from models.checkpoint import load
from models.continuous_cache import CacheParams, segment_log_probs
from models.vocabulary import Vocabulary
from service.engine.cache_mixture import mix, mix_scalar, mixed_probs
from service.engine.core import EngineConfig
from service.engine.errors import InvalidRequest, Overloaded
from service.engine.params import GenerationRequest, SamplingParams
from service.engine.results import SessionStep
from service.engine.session_cache import CachePool, CacheRow
from tests.conftest import make_checkpoint
from tests.engine_harness import LocalEngine as Engine
from tests.engine_harness import run_engine, start_local
from tests.redisproc import REDIS_SERVER, running_redis
from tests.serverproc import running_server

PARAMS = CacheParams(theta=1.0, lam=0.3, window=8)
TOL = 1e-4
TEXT = (
    "the company said the company expects the company to rise \n the company said "
    "sales rose and the company said sales fell"
)


@pytest.fixture(scope="module")
def cached_checkpoint(tmp_path_factory: pytest.TempPathFactory, ptb_vocabulary: Vocabulary) -> Path:
    """The tiny test model with tuned-looking cache numbers in its card."""
    card = {"continuous_cache": {**PARAMS.to_dict(), "tuned_on": "test"}}
    return make_checkpoint(tmp_path_factory.mktemp("cached") / "tiny", ptb_vocabulary, card=card)


def offline_logprobs(checkpoint: Path, ids: list[int], params: CacheParams) -> list[float]:
    """Each of ``ids``' log-prob after the sentence start, from the offline evaluator."""
    loaded = load(checkpoint, torch.device("cpu"))
    model = loaded.model.eval()
    stream = torch.tensor([loaded.vocabulary.eos_id, *ids])
    with torch.inference_mode():
        hidden, _ = model.hidden_states(stream[None, :-1])
        log_probs = functional.log_softmax(model.decoder(hidden[0]), -1)
        empty = torch.empty(0, hidden.shape[-1], dtype=torch.float16)
        mixed = segment_log_probs(
            log_probs, hidden[0], stream[1:], empty, torch.empty(0, dtype=torch.long), params
        )
    return mixed.gather(1, stream[1:, None]).squeeze(1).tolist()


def _chunks(words: list[str], seed: int) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(words):
        size = rng.choice([1, 1, 2, 3, 7])
        out.append(" ".join(words[i : i + size]))
        i += size
    return out


def test_feeds_equal_the_offline_mixture(cached_checkpoint: Path) -> None:
    """Chunked feeds (ring wrapping at window 8) give the offline evaluator's numbers."""
    words = TEXT.split(" ")

    async def scenario(engine: Engine) -> None:
        ids = engine.client.encode(TEXT)[1]
        expected = offline_logprobs(cached_checkpoint, ids, PARAMS)
        plain = offline_logprobs(cached_checkpoint, ids, CacheParams(1.0, 0.0, 8))
        session = await engine.create_session("", k=5, cache=True)
        other = await engine.create_session("", k=5)  # no cache, in the same steps
        position = 0
        for chunk in _chunks(words, seed=3):
            got, bare = await asyncio.gather(
                engine.feed(session.session_id, chunk, k=5),
                engine.feed(other.session_id, chunk, k=5),
            )
            n = got.position - position
            assert abs(got.logprob - sum(expected[position : position + n])) <= TOL * n
            assert abs(bare.logprob - sum(plain[position : position + n])) <= TOL * n
            position = got.position
        assert position == len(ids)
        assert sum(expected) > sum(plain) + 1.0  # the repeats are predicted better

    run_engine(cached_checkpoint, scenario)


def test_repeated_word_gains_probability(cached_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        text = "the company said sales rose \n"
        cached = await engine.create_session(text, k=10, cache=True)
        plain = await engine.create_session(text, k=10)
        again = await engine.feed(cached.session_id, "the company", k=10)
        bare = await engine.feed(plain.session_id, "the company", k=10)
        assert again.logprob > bare.logprob
        said_cached = {p.word: p.logprob for p in again.predictions}
        said_plain = {p.word: p.logprob for p in bare.predictions}
        assert said_cached.get("said", -math.inf) > said_plain.get("said", -math.inf)

    run_engine(cached_checkpoint, scenario)


def test_mixture_is_a_distribution_and_survives_a_dump() -> None:
    """The batched mixture sums to 1, puts the cache's mass on the window's words, and a
    ring written back from its bytes attends the same."""
    torch.manual_seed(0)
    pool = CachePool(PARAMS, hidden=6, history=4, max_bytes=1 << 20, device=torch.device("cpu"))
    slots = [pool.allocate(), pool.allocate()]
    for slot in slots:
        pool.prepare(CacheRow(slot), reset=True)
    pool.append(slots[0], torch.randn(11, 6), torch.randint(0, 50, (11,)))  # wraps the ring
    model = torch.log_softmax(torch.randn(2, 50), -1)
    queries = torch.randn(2, 6)
    weights, has = pool.attend(slots, queries)
    assert has == [True, False]  # the second ring is empty
    probs = mixed_probs(pool, slots, weights, has, model)
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(probs[1], model[1].exp())  # no cache: the model's numbers
    window = set(pool.words[slots[0]].tolist())
    gained = (probs[0] - model[0].exp() * (1 - PARAMS.lam)).nonzero().flatten().tolist()
    assert gained and set(gained) <= window
    for model_lp, prob in ((-3.0, 0.25), (-40.0, 0.5), (-0.1, 0.0)):
        tensor_mix = mix(torch.tensor(model_lp), torch.log(torch.tensor(prob)), PARAMS.lam)
        assert abs(mix_scalar(model_lp, prob, PARAMS.lam) - float(tensor_mix)) < 1e-6
    other = pool.allocate()
    pool.load(other, pool.dump(slots[0]))
    again, _ = pool.attend([other], queries[:1])
    index = torch.tensor([other])
    assert torch.allclose(mixed_probs(pool, [other], again, [True], model[:1]), probs[:1])
    assert pool.words[index].tolist() == pool.words[torch.tensor(slots[:1])].tolist()


def test_generation_samples_the_mixture_and_extends_the_cache(cached_checkpoint: Path) -> None:
    """Greedy generation in a cached session picks the mixture's top word each step, and
    the generated words join the cache like fed ones."""

    async def scenario(engine: Engine) -> None:
        text = "the company said the company expects the"
        created = await engine.create_session(text, k=1, cache=True)
        greedy = GenerationRequest(max_tokens=5, sampling=SamplingParams(0.0), stop_at_eos=False)
        stream = await engine.generate_in_session(created.session_id, None, greedy)
        words = [w.word for w in await stream.collect()]
        assert words[0] == created.predictions[0].word  # the mixture's top word
        fresh = await engine.create_session(f"{text} {' '.join(words)}", k=5, cache=True)
        after = await engine.feed(created.session_id, "said", k=5)
        again = await engine.feed(fresh.session_id, "said", k=5)
        _same(after, again)

    run_engine(cached_checkpoint, scenario)


def test_fork_rewind_export_carry_the_cache(cached_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        client = engine.client
        text = "the company said the company expects sales to rise"
        source = await engine.create_session(text, k=10, cache=True)
        fork = await client.fork_session(source.session_id, k=10)
        a = await engine.feed(source.session_id, "the company said", k=10)
        b = await engine.feed(fork.session_id, "the company said", k=10)
        _same(a, b)
        fresh = await engine.create_session(text, k=10, cache=True)
        await engine.feed(fresh.session_id, "the company said", k=10)
        back = await client.rewind_session(fresh.session_id, 3, k=10)
        _same(back, source, logprob=False)  # the undone words left the cache too
        _same(await engine.feed(fresh.session_id, "the company said", k=10), a)
        token, _ = await client.export_state(source.session_id)
        twin = await start_local(EngineConfig(cached_checkpoint, device="cpu", state_key="k"))
        try:
            imported = await twin.client.import_state(token, k=10)
            _same(
                await twin.feed(imported.session_id, "the company", k=10),
                await engine.feed(source.session_id, "the company", k=10),
            )
        finally:
            await twin.stop()

    run_engine(cached_checkpoint, scenario, state_key="k")


def test_cache_budget_and_models_without_one(
    cached_checkpoint: Path, tiny_checkpoint: Path
) -> None:
    async def budget(engine: Engine) -> None:
        first = await engine.create_session("the", cache=True)
        await engine.create_session("the", cache=True)
        with pytest.raises(Overloaded, match="LSTM_SERVE_MAX_CACHE_BYTES"):
            await engine.create_session("the", cache=True)
        await engine.create_session("the")  # sessions without a cache are not limited
        await engine.remove_session(first.session_id)
        await engine.create_session("the", cache=True)
        assert engine.metrics.sessions_cached._value.get() == 2

    pool_bytes = (PARAMS.window + 32) * (16 * 2 + 8 + 4)  # keys, words, kept weights
    run_engine(cached_checkpoint, budget, max_cache_bytes=2 * pool_bytes + 10)

    async def uncached_model(engine: Engine) -> None:
        with pytest.raises(InvalidRequest, match="no continuous cache"):
            await engine.create_session("the", cache=True)

    run_engine(tiny_checkpoint, uncached_model)


def _same(a: SessionStep, b: SessionStep, logprob: bool = True) -> None:
    assert [p.word for p in a.predictions] == [p.word for p in b.predictions]
    for x, y in zip(a.predictions, b.predictions, strict=True):
        assert abs(x.logprob - y.logprob) <= TOL
    assert not logprob or abs(a.logprob - b.logprob) <= TOL


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_cached_session_survives_a_replica_death(cached_checkpoint: Path, tmp_path: Path) -> None:
    """Replica A dies (SIGKILL) after acknowledged feeds; B resumes the cache from Redis."""
    text = "the company said the company expects"
    with running_redis(tmp_path) as redis:
        env = {
            "LSTM_SERVE_MODEL_PATH": str(cached_checkpoint),
            "LSTM_SERVE_SESSION_STORE": redis.url,
            "LSTM_SERVE_SESSION_CACHE": "on",
        }
        with (
            running_server(env, tmp_path / "a.log") as a,
            running_server(env, tmp_path / "b.log") as b,
        ):
            made = httpx.post(f"{a.url}/v1/sessions", json={"text": text}).json()
            sid = made["session_id"]
            a.stop(9)
            on_b = httpx.post(f"{b.url}/v1/sessions/{sid}/feed", json={"text": "the company"})
            plain = httpx.post(
                f"{b.url}/v1/sessions", json={"text": f"{text} the company", "cache": False}
            ).json()
            whole = httpx.post(
                f"{b.url}/v1/sessions", json={"text": f"{text} the company", "cache": True}
            ).json()
        assert on_b.status_code == 200, on_b.text
        answer: dict[str, Any] = on_b.json()
        assert answer["position"] == whole["position"]
        assert _top(answer) == _top(whole) != _top(plain)


def _top(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(p["word"], round(p["logprob"], 4)) for p in answer["predictions"]]


def test_ptb_through_the_api_equals_offline(ptb_dir: Path, tmp_path: Path) -> None:
    """Sentences of PTB test fed over HTTP through one cached session of the bundled model
    (its tuned theta, lambda, window 500) give the offline cached perplexity (issue: ±1 %)."""
    from tests.conftest import BUNDLED_MODEL_DIR

    lines = (ptb_dir / "ptb.test.txt").read_text().splitlines()[:80]
    loaded = load(BUNDLED_MODEL_DIR, torch.device("cpu"))
    ids = [loaded.vocabulary.id(w) for line in lines for w in [*line.split(), "<eos>"]]
    params = CacheParams.from_dict(loaded.card["continuous_cache"])
    offline = math.exp(-sum(offline_logprobs(BUNDLED_MODEL_DIR, ids, params)) / len(ids))
    plain = math.exp(
        -sum(offline_logprobs(BUNDLED_MODEL_DIR, ids, CacheParams(1.0, 0.0, 1))) / len(ids)
    )
    env = {"LSTM_SERVE_MODEL_PATH": str(BUNDLED_MODEL_DIR)}
    with (
        running_server(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        made = http.post("/v1/sessions", json={"cache": True, "k": 1})
        assert made.status_code == 201, made.text
        sid, total, position = made.json()["session_id"], 0.0, 0
        for start in range(0, len(lines), 8):
            text = "".join(line + "\n" for line in lines[start : start + 8])
            fed = http.post(f"/v1/sessions/{sid}/feed", json={"text": text, "k": 1}).json()
            total, position = total + fed["logprob"], fed["position"]
        card = http.get("/v1/models").json()["data"][0]
    served = math.exp(-total / position)
    assert position == len(ids)
    assert abs(served - offline) <= 0.01 * offline, (served, offline)
    assert served < plain  # the cache helps on real text
    assert card["continuous_cache"] == {"theta": 0.7, "lambda": 0.1, "window": 500}
    assert card["test_perplexity_cache"] < card["test_perplexity"]


def test_ws_stream_with_a_cache(server: Any, cached_checkpoint: Path, tmp_path: Path) -> None:
    """``/v1/stream?cache=true`` opens a cached session; a bad flag is refused."""
    from websockets.sync.client import connect

    env = {"LSTM_SERVE_MODEL_PATH": str(cached_checkpoint)}
    text = "the company said the company expects the company"
    with running_server(env, tmp_path / "ws.log") as cached_server:
        answers = {}
        for flag in ("true", "false"):
            with connect(f"{cached_server.ws_url}/v1/stream?cache={flag}") as ws:
                json.loads(ws.recv(timeout=20))
                ws.send(json.dumps({"type": "feed", "text": text, "k": 3}))
                answers[flag] = json.loads(ws.recv(timeout=20))
        with connect(f"{cached_server.ws_url}/v1/stream?cache=maybe") as ws:
            refused = json.loads(ws.recv(timeout=20))
            assert refused["type"] == "error" and refused["code"] == "invalid_request"
        made = httpx.post(f"{cached_server.url}/v1/sessions", json={"cache": "yes"})
        assert made.status_code == 422 and made.json()["error"]["code"] == "invalid_request"
    assert answers["true"]["logprob"] > answers["false"]["logprob"]
    assert answers["true"]["position"] == answers["false"]["position"]
