"""The bucketed decode step (``service.engine.graphs``) equals the model's plain packed step.

On the CPU the whole bucketed path runs (bucket choice, copies into padded static
buffers, the padded step, slicing back, the fall-back beyond the largest bucket); only the
CUDA graph capture itself needs a GPU, and its test is skipped without one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import load
from models.network import LanguageModel
from models.vocabulary import Vocabulary
from service.engine.graphs import DecodeGraphs, bucket_for, to_host
from tests.conftest import make_checkpoint

ROOT = Path(__file__).resolve().parent.parent
BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# A padded bucket and the plain step multiply matrices of different row counts, which
# sum in different orders: ~2e-6 apart in float32 (models/lstm_step). Answers are held
# to 1e-5 everywhere else too.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def default_model() -> LanguageModel:
    return load(ROOT / "models" / "default").model.eval()


def _inputs(model: LanguageModel, batch: int, seed: int, device: str = "cpu") -> tuple:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (batch, 1), generator=generator)
    h, c = model.initial_state(batch)
    h = torch.randn(h.shape, generator=generator) * 0.5
    c = torch.randn(c.shape, generator=generator) * 0.5
    return tokens.to(device), (h.to(device), c.to(device))


def _plain(model: LanguageModel, tokens: torch.Tensor, state: tuple) -> tuple:
    with torch.inference_mode():
        return model.packed_hidden_states(tokens, [1] * tokens.shape[0], state)


def _max_difference(a: tuple, b: tuple) -> float:
    (out_a, (h_a, c_a)), (out_b, (h_b, c_b)) = a, b
    assert out_a.shape == out_b.shape and h_a.shape == h_b.shape and c_a.shape == c_b.shape
    return max(_diff(x, y) for x, y in ((out_a, out_b), (h_a, h_b), (c_a, c_b)))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference (0 for empty tensors: ``c`` of rnn/gru is ``[L, B, 0]``)."""
    return (a - b).abs().max().item() if a.numel() else 0.0


def _flat(result: tuple) -> tuple:
    out, (h, c) = result
    return out, h, c


def test_bucket_for() -> None:
    assert [bucket_for(n, BUCKETS) for n in (1, 2, 3, 5, 33, 64, 65)] == [
        1,
        2,
        4,
        8,
        64,
        64,
        None,
    ]


@pytest.mark.parametrize("batch", [1, 3, 64, 65])
def test_bucketed_step_equals_plain_step(default_model: LanguageModel, batch: int) -> None:
    graphs = DecodeGraphs(default_model, torch.device("cpu"), BUCKETS)
    assert graphs.capture is False
    for seed in (batch, batch + 1000):  # twice: the second reuses the bucket's buffers
        tokens, state = _inputs(default_model, batch, seed)
        expected = _plain(default_model, tokens, state)
        got = graphs.step(tokens, state)
        assert got[0].shape == (batch, 1, default_model.config.hidden_size)
        assert _max_difference(got, expected) <= TOLERANCE
    assert graphs.captured_sizes == []


def test_smaller_batch_after_larger_in_the_same_bucket(default_model: LanguageModel) -> None:
    """Stale rows left in the padding by a larger batch do not leak into a smaller one."""
    graphs = DecodeGraphs(default_model, torch.device("cpu"), BUCKETS)
    graphs.step(*_inputs(default_model, 7, seed=1))
    tokens, state = _inputs(default_model, 5, seed=2)
    assert _max_difference(graphs.step(tokens, state), _plain(default_model, tokens, state)) <= (
        TOLERANCE
    )


@pytest.mark.parametrize("cell", ["gru", "lstm_peephole"])
def test_other_cells(tmp_path: Path, ptb_vocabulary: Vocabulary, cell: str) -> None:
    """Cells without a cell state (``c`` of width 0) and looped cells take the same path."""
    model = load(make_checkpoint(tmp_path, ptb_vocabulary, cell=cell)).model.eval()
    graphs = DecodeGraphs(model, torch.device("cpu"), BUCKETS)
    graphs.prepare()
    tokens, state = _inputs(model, 3, seed=3)
    assert _max_difference(graphs.step(tokens, state), _plain(model, tokens, state)) <= TOLERANCE


def test_rejects_multi_token_rows(default_model: LanguageModel) -> None:
    graphs = DecodeGraphs(default_model, torch.device("cpu"), BUCKETS)
    with pytest.raises(ValueError, match=r"\[B, 1\]"):
        graphs.step(torch.zeros(2, 3, dtype=torch.long), default_model.initial_state(2))


def test_capture_needs_cuda(default_model: LanguageModel) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        DecodeGraphs(default_model, torch.device("cpu"), BUCKETS, capture=True)


def test_to_host_on_cpu_is_a_plain_copy() -> None:
    tensor = torch.arange(6.0).view(2, 3)
    copy = to_host(tensor)
    assert copy.event is None
    assert torch.equal(copy.wait(), tensor)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("batch", [1, 3, 64, 65])
def test_cuda_graph_replay_equals_eager(batch: int) -> None:
    """Replay equals the same padded step run eagerly (same shapes, so the same kernels),
    and the plain unpadded step up to what other kernels for other sizes may change."""
    device = torch.device("cuda")
    model = load(ROOT / "models" / "default", device).model.eval()
    graphs = DecodeGraphs(model, device, BUCKETS)
    graphs.prepare()
    assert graphs.captured_sizes == list(BUCKETS)
    eager = DecodeGraphs(model, device, BUCKETS, capture=False)
    for seed in (batch, batch + 1000):  # replay twice with new inputs in the same buffers
        tokens, state = _inputs(model, batch, seed, "cuda")
        expected = tuple(t.clone() for t in _flat(eager.step(tokens, state)))
        plain = _plain(model, tokens, state)
        got = graphs.step(tokens, state)
        torch.cuda.synchronize()
        assert max(_diff(a, b) for a, b in zip(_flat(got), expected, strict=True)) <= TOLERANCE
        assert _max_difference(got, plain) <= 1e-4  # TF32 / per-size kernel choice
    host = to_host(got[0])
    assert host.tensor.is_pinned()
    assert torch.equal(host.wait(), got[0].cpu())


def test_engine_with_the_setting_answers_the_same(tiny_checkpoint: Path) -> None:
    """``LSTM_SERVE_CUDA_GRAPHS`` on a CPU: the engine's one-token steps take the padded
    bucket path (graphs are only captured on CUDA) and every answer stays the same."""
    import asyncio

    from tests.engine_harness import run_engine

    async def answers(engine: object) -> list[object]:
        client = engine.client  # type: ignore[attr-defined]
        sessions = [await client.create_session("the", k=5) for _ in range(3)]
        steps = await asyncio.gather(
            *(
                client.feed(s.session_id, word, k=5)
                for s, word in zip(sessions, "a b c".split(), strict=True)
            )
        )
        return [[(p.word, p.logprob) for p in s.predictions] for s in steps]

    graphs_on = run_engine(tiny_checkpoint, answers, cuda_graphs=True)
    plain = run_engine(tiny_checkpoint, answers)
    for got, expected in zip(graphs_on, plain, strict=True):
        assert [w for w, _ in got] == [w for w, _ in expected]
        assert all(abs(a - b) <= TOLERANCE for (_, a), (_, b) in zip(got, expected, strict=True))
