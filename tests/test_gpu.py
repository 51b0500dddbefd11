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


def _answers(checkpoint: Path, device: str) -> tuple[list[float], list[str]]:
    async def main() -> tuple[list[float], list[str]]:
        engine = Engine(EngineConfig(checkpoint, device=device))
        await engine.start()
        try:
            scores = await asyncio.gather(
                *(engine.score(t) for t in ["the market fell", "it 's N", "the bank said"])
            )
            greedy = GenerationRequest(
                max_tokens=10, sampling=SamplingParams(0.0), stop_at_eos=False
            )
            words = await (await engine.generate("the", greedy)).collect()
            return [lp for s in scores for lp in s.token_logprobs], [w.word for w in words]
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_cuda_engine_equals_cpu(tiny_checkpoint: Path) -> None:
    cpu_scores, cpu_words = _answers(tiny_checkpoint, "cpu")
    gpu_scores, gpu_words = _answers(tiny_checkpoint, "cuda")
    assert all(abs(a - b) < 1e-3 for a, b in zip(cpu_scores, gpu_scores, strict=True))
    assert cpu_words == gpu_words
