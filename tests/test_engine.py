"""Engine invariants on a tiny random model: batching, sessions, sampling, limits."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest

from service.engine.client import FinishReason, GenerationRequest, SamplingParams
from service.engine.errors import NotReady, Overloaded, SessionNotFound, Timeout
from tests.engine_harness import LocalEngine as Engine
from tests.engine_harness import run_engine

TEXTS = [
    "the company said it expects sales to rise",
    "shares of the bank fell sharply on friday after the report",
    "it 's N",
    "",
    "analysts said the market was",
    "the new york stock exchange",
    "mr. smith said",
    "investors are worried that the federal reserve will raise interest rates again this year",
]


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_batched_equals_unbatched(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> tuple[list[Any], list[Any], int]:
        predictions = await asyncio.gather(*(engine.predict(t, k=10) for t in TEXTS * 4))
        scores = await asyncio.gather(*(engine.score(t) for t in TEXTS * 4))
        assert engine.worker is not None
        return predictions, scores, engine.worker.steps

    batched, batched_scores, batched_steps = run_engine(tiny_checkpoint, scenario)
    alone, alone_scores, alone_steps = run_engine(tiny_checkpoint, scenario, max_batch_size=1)
    assert batched_steps < alone_steps  # it really batched
    for b, a in zip(batched, alone, strict=True):
        assert [p.word for p in b.predictions] == [p.word for p in a.predictions]
        assert _close([p.logprob for p in b.predictions], [p.logprob for p in a.predictions])
    for b, a in zip(batched_scores, alone_scores, strict=True):
        assert b.tokens == a.tokens
        assert _close(b.token_logprobs, a.token_logprobs)


def test_predictions_sorted_and_special_words_left_out(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        full = await engine.predict("the", k=50)
        probs = [p.probability for p in full.predictions]
        assert probs == sorted(probs, reverse=True) and len(probs) == 50
        plain = await engine.predict("the", k=50, skip_special=True)
        assert len(plain.predictions) == 50
        assert not {"<unk>", "<eos>"} & {p.word for p in plain.predictions}

    run_engine(tiny_checkpoint, scenario)


def test_score_chains_with_predict(tiny_checkpoint: Path) -> None:
    """log p(w_i | w_<i) from score equals predict's distribution after the prefix."""

    async def scenario(engine: Engine) -> None:
        score = await engine.score("the company said it")
        for i, word in enumerate(score.tokens):
            prefix = " ".join(score.tokens[:i])
            prediction = await engine.predict(prefix, k=10_000)
            logprob = next(p.logprob for p in prediction.predictions if p.word == word)
            assert abs(logprob - score.token_logprobs[i]) < 1e-5
        assert math.isclose(score.perplexity or 0, math.exp(-score.logprob / 4))

    run_engine(tiny_checkpoint, scenario)


def test_feed_whole_equals_word_by_word_and_session_equals_stateless(tiny_checkpoint: Path) -> None:
    text = "shares of the bank fell sharply on friday"

    async def scenario(engine: Engine) -> None:
        whole = await engine.create_session("", k=5)
        fed = await engine.feed(whole.session_id, text, k=5)
        split = await engine.create_session("", k=5)
        total = 0.0
        for word in text.split():
            step = await engine.feed(split.session_id, word, k=5)
            total += step.logprob
        assert abs(total - fed.logprob) < 1e-4
        assert [p.word for p in step.predictions] == [p.word for p in fed.predictions]
        assert _close([p.logprob for p in step.predictions], [p.logprob for p in fed.predictions])
        assert step.position == fed.position == len(text.split())
        stateless = await engine.predict(text, k=5)
        assert _close(
            [p.logprob for p in stateless.predictions], [p.logprob for p in fed.predictions]
        )
        score = await engine.score(text)
        assert abs(score.logprob - fed.logprob) < 1e-4

    run_engine(tiny_checkpoint, scenario)


def test_interleaved_sessions_equal_sessions_alone(tiny_checkpoint: Path) -> None:
    streams = [t.split() for t in TEXTS if t]

    async def drive(engine: Engine, words: list[str]) -> list[float]:
        session = await engine.create_session("")
        return [(await engine.feed(session.session_id, w)).logprob for w in words]

    async def together(engine: Engine) -> list[list[float]]:
        return list(await asyncio.gather(*(drive(engine, s) for s in streams)))

    async def alone(engine: Engine) -> list[list[float]]:
        return [await drive(engine, s) for s in streams]

    mixed = run_engine(tiny_checkpoint, together)
    single = run_engine(tiny_checkpoint, alone)
    for a, b in zip(mixed, single, strict=True):
        assert _close(a, b)


def test_concurrent_feeds_to_one_session_apply_in_arrival_order(tiny_checkpoint: Path) -> None:
    words = "the market fell after the bank said its profit would drop".split()

    async def concurrent(engine: Engine) -> tuple[list[int], list[float]]:
        session = await engine.create_session("")
        steps = await asyncio.gather(*(engine.feed(session.session_id, w) for w in words))
        return [s.position for s in steps], [s.logprob for s in steps]

    async def sequential(engine: Engine) -> list[float]:
        session = await engine.create_session("")
        return [(await engine.feed(session.session_id, w)).logprob for w in words]

    positions, logprobs = run_engine(tiny_checkpoint, concurrent)
    assert positions == list(range(1, len(words) + 1))
    assert _close(logprobs, run_engine(tiny_checkpoint, sequential))


def test_each_feed_reports_its_own_position_when_the_loop_lags(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy event loop resumes a feed after later feeds of its session have finished:
    the answer still carries the position right after its own words."""
    from service.engine import worker

    deliver = worker._run_callbacks

    def slow_loop(callbacks: list[Any]) -> None:
        deliver(callbacks)
        time.sleep(0.02)  # meanwhile the inference thread finishes the next steps

    monkeypatch.setattr(worker, "_run_callbacks", slow_loop)
    words = "the market fell after the bank said its profit would drop".split()

    async def concurrent(engine: Engine) -> list[int]:
        session = await engine.create_session("")
        steps = await asyncio.gather(*(engine.feed(session.session_id, w) for w in words))
        return [s.position for s in steps]

    assert run_engine(tiny_checkpoint, concurrent) == list(range(1, len(words) + 1))


def test_seeded_sampling_is_identical_under_load(tiny_checkpoint: Path) -> None:
    request = GenerationRequest(
        max_tokens=15, sampling=SamplingParams(0.9, 40, 0.95), seed=7, stop_at_eos=False
    )

    async def lone(engine: Engine) -> list[str]:
        return [w.word for w in await (await engine.generate("the market", request)).collect()]

    async def loaded(engine: Engine) -> list[list[str]]:
        noise = [
            await engine.generate(t, GenerationRequest(max_tokens=15, seed=i))
            for i, t in enumerate(TEXTS)
        ]
        ours = [await engine.generate("the market", request) for _ in range(3)]
        results = await asyncio.gather(*(g.collect() for g in noise + ours))
        return [[w.word for w in r] for r in results[len(noise) :]]

    reference = run_engine(tiny_checkpoint, lone)
    assert len(reference) == 15
    assert all(words == reference for words in run_engine(tiny_checkpoint, loaded))


def test_generation_never_emits_unk_and_stops_at_eos(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        for seed in range(5):
            stream = await engine.generate("", GenerationRequest(max_tokens=60, seed=seed))
            words = [w.word for w in await stream.collect()]
            assert "<unk>" not in words
            if stream.finish_reason is FinishReason.EOS:
                assert words[-1] == "<eos>" and "<eos>" not in words[:-1]
            else:
                assert stream.finish_reason is FinishReason.LENGTH and len(words) == 60
        greedy = GenerationRequest(max_tokens=10, sampling=SamplingParams(0.0), stop_at_eos=False)
        first = [w.word for w in await (await engine.generate("the", greedy)).collect()]
        second = [w.word for w in await (await engine.generate("the", greedy)).collect()]
        assert first == second and len(first) == 10

    run_engine(tiny_checkpoint, scenario)


def test_session_generation_extends_history(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        created = await engine.create_session("the market")
        request = GenerationRequest(max_tokens=6, sampling=SamplingParams(0.0), stop_at_eos=False)
        stream = await engine.generate_in_session(created.session_id, None, request)
        words = await stream.collect()
        assert [w.position for w in words] == list(range(3, 9))
        assert stream.position == 8
        assert (await engine.describe_session(created.session_id)).position == 8
        # The state now equals feeding those words to a fresh session.
        after = await engine.feed(created.session_id, "said", k=5)
        fresh = await engine.create_session("the market " + " ".join(w.word for w in words))
        again = await engine.feed(fresh.session_id, "said", k=5)
        assert abs(after.logprob - again.logprob) < 1e-4

    run_engine(tiny_checkpoint, scenario)


def test_cancelled_generation_leaves_the_worker(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        stream = await engine.generate("", GenerationRequest(max_tokens=1000, stop_at_eos=False))
        async for word in stream:
            if word.index == 2:
                break
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not engine.worker._active and engine.runner.pool.in_use == 0:  # type: ignore[union-attr]
                break
        assert engine.worker._active == []  # type: ignore[union-attr]
        assert engine.runner.pool.in_use == 0  # type: ignore[union-attr]

    run_engine(tiny_checkpoint, scenario)


def test_overload_is_immediate(tiny_checkpoint: Path) -> None:
    long_text = " ".join(["the market"] * 2000)

    async def scenario(engine: Engine) -> list[Any]:
        return await asyncio.gather(
            *(engine.predict(long_text) for _ in range(40)), return_exceptions=True
        )

    results = run_engine(tiny_checkpoint, scenario, max_queue=2, max_batch_size=1)
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert overloaded and all(r.code == "overloaded" for r in overloaded)
    assert all(not isinstance(r, Exception) or isinstance(r, Overloaded) for r in results)


def test_deadline_gives_timeout(tiny_checkpoint: Path) -> None:
    long_text = " ".join(["the market"] * 20000)

    async def scenario(engine: Engine) -> list[Any]:
        return await asyncio.gather(
            *(engine.score(long_text) for _ in range(4)), return_exceptions=True
        )

    results = run_engine(tiny_checkpoint, scenario, request_timeout_s=0.05, max_batch_size=1)
    assert any(isinstance(r, Timeout) for r in results)


def test_ttl_expiry_and_capacity(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        first = await engine.create_session("a")
        await engine.create_session("b")
        with pytest.raises(Overloaded):
            await engine.create_session("c")
        await asyncio.sleep(0.5)
        with pytest.raises(SessionNotFound):
            await engine.describe_session(first.session_id)
        assert engine.metrics.sessions_expired._value.get() == 2
        assert engine.runner.pool.in_use == 0  # type: ignore[union-attr]
        await engine.create_session("d")  # capacity is free again

    run_engine(
        tiny_checkpoint, scenario, max_sessions=2, session_ttl_s=0.2, session_sweep_interval_s=0.05
    )


def test_sessions_are_private_and_deletable(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        mine = await engine.create_session("the", owner="key-a")
        with pytest.raises(SessionNotFound):
            await engine.feed(mine.session_id, "market", owner="key-b")
        await engine.remove_session(mine.session_id, owner="key-a")
        with pytest.raises(SessionNotFound):
            await engine.feed(mine.session_id, "market", owner="key-a")
        assert len(mine.session_id) >= 22  # >= 128 random bits, URL-safe

    run_engine(tiny_checkpoint, scenario)


def test_a_failing_batch_fails_alone(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        runner = engine.runner
        assert runner is not None
        real_step = runner.step
        calls = {"n": 0}

        def flaky(rows):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("injected fault")
            return real_step(rows)

        runner.step = flaky  # type: ignore[method-assign]
        with pytest.raises(Exception, match="internal error"):  # no internals leak
            await engine.predict("the")
        assert (await engine.predict("the")).predictions
        assert engine.health() == (True, "ready")

    run_engine(tiny_checkpoint, scenario)


def test_dead_worker_is_reported(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        def die(rows):
            raise SystemExit("worker killed")

        engine.runner.step = die  # type: ignore[method-assign, union-attr]
        with pytest.raises(Exception):  # noqa: B017
            await engine.predict("the")
        await asyncio.sleep(0.05)
        ready, reason = engine.health()
        assert not ready and "died" in reason
        with pytest.raises(NotReady):
            await engine.predict("the")

    run_engine(tiny_checkpoint, scenario)


def test_a_message_the_wire_cannot_carry_fails_alone(tiny_checkpoint: Path) -> None:
    """An integer past 64 bits fails its own call at once; the batch it shared a send with
    is still answered."""
    from service.engine import wire
    from service.engine.errors import InvalidRequest

    async def scenario(engine: Engine) -> None:
        bad = engine.client._call(wire.Predict(0, [2**70], 1))
        good = engine.predict("the market", 3)
        results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], InvalidRequest)
        assert len(results[1].predictions) == 3

    run_engine(tiny_checkpoint, scenario)
