"""The CUDA path: the same answers as the CPU (skipped only where there is no GPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from service.engine.core import Engine, EngineConfig, GenerationRequest
from service.engine.sampling import SamplingParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _answers(checkpoint: Path, device: str) -> tuple[list[float], list[int]]:
    async def main() -> tuple[list[float], list[int]]:
        engine = Engine(EngineConfig(checkpoint, device=device))
        await engine.start()
        try:
            assert engine.runner is not None
            vocabulary = engine.runner.vocabulary  # the engine takes word ids
            texts = ["the market fell", "it 's N", "the bank said"]
            scores = await asyncio.gather(
                *(engine.score(vocabulary.encode(t.split())) for t in texts)
            )
            greedy = GenerationRequest(
                max_tokens=10, sampling=SamplingParams(0.0), stop_at_eos=False
            )
            stream = engine.generate(vocabulary.encode(["the"]), greedy)
            words = [token.token_id async for token in stream]
            return [lp for s in scores for lp in s], words
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_cuda_engine_equals_cpu(tiny_checkpoint: Path) -> None:
    cpu_scores, cpu_words = _answers(tiny_checkpoint, "cpu")
    gpu_scores, gpu_words = _answers(tiny_checkpoint, "cuda")
    assert len(cpu_scores) == 9 and len(cpu_words) == 10
    assert all(abs(a - b) < 1e-3 for a, b in zip(cpu_scores, gpu_scores, strict=True))
    assert cpu_words == gpu_words


def _session_feeds(checkpoint: Path, device: str, cuda_graphs: bool) -> list[tuple]:
    """Five sessions fed word by word, all at once (one-token steps of 5 rows: bucket 8),
    then a two-word feed (the packed path); every step's position, log-prob and top-5."""

    async def main() -> list[tuple]:
        engine = Engine(EngineConfig(checkpoint, device=device, cuda_graphs=cuda_graphs))
        await engine.start()
        try:
            if cuda_graphs and device == "cuda":
                assert engine.runner is not None and engine.runner.decode_graphs is not None
                assert engine.runner.decode_graphs.captured_sizes  # really replayed
            ops = engine.ops()
            ids = [(await ops.create([3 + i], 5, None)).session_id for i in range(5)]
            steps = []
            for words in ([7], [11], [5], [12, 13], [2]):
                steps += await asyncio.gather(*(ops.feed(s, words, 5, None) for s in ids))
            return [(s.position, s.logprob, s.top) for s in steps]
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_cuda_graph_feeds_equal_cpu_feeds(tiny_checkpoint: Path) -> None:
    """``LSTM_SERVE_CUDA_GRAPHS`` on a GPU: session feeds replayed from the captured
    one-token graphs answer as the CPU's plain steps do."""
    cpu = _session_feeds(tiny_checkpoint, "cpu", cuda_graphs=False)
    gpu = _session_feeds(tiny_checkpoint, "cuda", cuda_graphs=True)
    assert len(cpu) == len(gpu) == 25
    for (pos_a, lp_a, top_a), (pos_b, lp_b, top_b) in zip(cpu, gpu, strict=True):
        assert pos_a == pos_b
        assert abs(lp_a - lp_b) < 1e-3
        assert [t for t, _ in top_a] == [t for t, _ in top_b]
        assert all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(top_a, top_b, strict=True))
