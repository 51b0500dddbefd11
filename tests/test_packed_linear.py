"""oneDNN's packed linear (``models.packed_linear``) gives the default kernels' answers:
the products, a one-token step, and the bundled model's serving step and decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import lstm_step, packed_linear
from models.checkpoint import load
from models.config import ModelConfig
from models.network import LanguageModel
from models.packed_linear import MIN_ROWS_TIMES_HIDDEN, PackedLayers, PackedLinear
from models.packed_rows import packed_rows

pytestmark = pytest.mark.skipif(
    not packed_linear.available(), reason="this torch has no oneDNN packed linear"
)
BUNDLED = Path(__file__).resolve().parents[1] / "models" / "default"


@pytest.mark.parametrize("rows", [1, 3, 64, 100, 513])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_equals_linear(rows: int, bias: bool) -> None:
    torch.manual_seed(rows)
    linear = torch.nn.Linear(200, 1000, bias=bias)
    x = torch.randn(rows, 200)
    with torch.inference_mode():
        packed = PackedLinear(linear.weight, linear.bias)(x)
        exact = torch.nn.functional.linear(
            x.double(),
            linear.weight.double(),
            None if linear.bias is None else linear.bias.double(),
        )
        default = linear(x)
    assert packed.shape == (rows, 1000) and packed.dtype == torch.float32
    # as close to float64 as MKL's own sum, give or take the order of the summation
    assert (packed.double() - exact).abs().max() <= 2 * (
        default.double() - exact
    ).abs().max() + 1e-6


def test_packed_linear_reads_a_strided_input_and_copies_the_weight() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 40)
    packed = PackedLinear(linear.weight, linear.bias)
    wide = torch.randn(8, 32)
    strided = wide[:, ::2]  # not contiguous
    with torch.inference_mode():
        torch.testing.assert_close(packed(strided), linear(strided), atol=1e-6, rtol=1e-5)
        before = packed(strided)
        linear.weight.add_(1.0)  # the pack is a copy: it does not see this
        torch.testing.assert_close(packed(strided), before, atol=0, rtol=0)


@pytest.mark.parametrize("tabled", [False, True])
@pytest.mark.parametrize("rows", [9, 2])  # 9 x 80 is wide enough for oneDNN, 2 x 80 not
def test_lstm_step_packed_equals_addmm(tabled: bool, rows: int) -> None:
    torch.manual_seed(1)
    embedding = torch.nn.Embedding(50, 24)
    layers = torch.nn.ModuleList([torch.nn.LSTM(24, 80), torch.nn.LSTM(80, 80)])
    tokens = torch.randint(0, 50, (rows,))
    h0, c0 = torch.randn(2, rows, 80), torch.randn(2, rows, 80)
    with torch.inference_mode():
        packed = PackedLayers.of(layers)
        x = embedding(tokens)
        gates = None
        if tabled:
            gates = lstm_step.input_gate_table(embedding, layers).index_select(0, tokens)
        top, h, c = lstm_step.lstm_step(layers, x, h0, c0, None if gates is None else gates.clone())
        top_p, h_p, c_p = lstm_step.lstm_step(layers, x, h0, c0, gates, packed=packed)
    for got, want in ((top_p, top), (h_p, h), (c_p, c)):
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
        # narrow batches keep addmm (bit for bit); wide ones sum in oneDNN's order
        assert torch.equal(got, want) == (rows * 80 < MIN_ROWS_TIMES_HIDDEN)


def test_prepare_for_serving_packs_only_when_asked_or_faster() -> None:
    torch.manual_seed(2)
    config = ModelConfig(vocab_size=300, embedding_size=16, hidden_size=16, num_layers=2)
    model = LanguageModel(config).eval()
    assert "asked for" in model.prepare_for_serving("default")
    assert model.packed_decoder is None and model.packed_layers is None
    assert model.input_gates is not None  # the gate table does not depend on the kernel
    assert "asked for" in model.prepare_for_serving("onednn")
    assert model.packed_decoder is not None and model.packed_layers is not None
    why = model.prepare_for_serving("auto")  # timed: either may win on a given machine
    assert "ms with oneDNN" in why and "ms with the default" in why
    assert (model.packed_decoder is not None) == why.startswith("oneDNN")


def test_project_keeps_the_gradient_path_unpacked() -> None:
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=300, embedding_size=16, hidden_size=16, num_layers=2)
    model = LanguageModel(config)
    model.prepare_for_serving("onednn")
    hidden = torch.randn(4, 16, requires_grad=True)
    model.project(hidden).sum().backward()  # the packed weight has no gradient
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


def test_bundled_model_serves_the_same_answers_with_either_kernel() -> None:
    """One-token, two-token and packed rows of the real 2 x 200 model, decoded: the
    log-softmax agrees to 1e-5 and the top words are the same."""
    model = load(BUNDLED, torch.device("cpu")).model.eval()
    torch.manual_seed(4)
    lengths = [1, 2, 1, 2, 1]
    tokens = torch.randint(0, model.config.vocab_size, (5, 2))
    h0, c0 = (0.5 * t for t in model.initial_state(5))
    answers = []
    for kernel in ("default", "onednn"):
        model.prepare_for_serving(kernel)
        with torch.inference_mode():
            for rows in (lengths, [1] * 5):
                out, (h, c) = model.packed_hidden_states(tokens[:, : max(rows)], rows, (h0, c0))
                last = out[torch.arange(5), torch.tensor(rows) - 1]
                answers.append((torch.log_softmax(model.project(last), -1), h, c))
    half = len(answers) // 2
    for (lp_d, h_d, c_d), (lp_o, h_o, c_o) in zip(answers[:half], answers[half:], strict=True):
        torch.testing.assert_close(lp_o, lp_d, atol=1e-5, rtol=0)
        torch.testing.assert_close(h_o, h_d, atol=5e-6, rtol=1e-5)
        torch.testing.assert_close(c_o, c_d, atol=5e-6, rtol=1e-5)
        assert torch.equal(lp_o.topk(5).indices, lp_d.topk(5).indices)


def test_cpu_matmul_ab_times_every_weight_and_the_step() -> None:
    from bench.micro.cpu_matmul_ab import main

    result = main(["--models", str(BUNDLED), "--rounds", "1"])
    products, steps, prompts = result["products"], result["steps"], result["prompts"]
    assert isinstance(products, list) and isinstance(steps, list) and isinstance(prompts, list)
    assert len(prompts) == 6 and all(row["max_difference"] < 1e-4 for row in prompts)
    assert all(row["same_ids"] for row in result["results"])  # type: ignore[union-attr]
    weights = {row["weight"] for row in products}
    assert weights == {"decoder", *(f"W_{k} layer {i}" for i in (0, 1) for k in ("ih", "hh"))}
    for row in products + steps:
        assert row["default_ms"] > 0 and row["onednn_ms"] > 0
    decoder = [row for row in products if row["weight"] == "decoder"]
    assert all(row["onednn_logprob_error"] < 1e-4 for row in decoder)
    assert all(row["max_state_difference"] < 1e-4 for row in steps)


@pytest.mark.parametrize("lengths", [[7, 1, 12, 3, 12, 5], [40], [3, 9]])
def test_packed_rows_equal_nn_lstm(lengths: list[int]) -> None:
    """Unsorted rows of 1-40 tokens: outputs (zeros past each row's end) and final states
    as ``nn.LSTM``'s packed path gives them."""
    torch.manual_seed(len(lengths))
    config = ModelConfig(
        vocab_size=300, embedding_size=24, hidden_size=40, num_layers=3, tied=False
    )
    model = LanguageModel(config).eval()
    tokens = torch.randint(0, 300, (len(lengths), max(lengths)))
    state = tuple(0.5 * torch.randn(3, len(lengths), 40) for _ in range(2))
    model.prepare_for_serving("default")
    with torch.inference_mode():
        want, (want_h, want_c) = model.packed_hidden_states(tokens, lengths, state)
        model.prepare_for_serving("onednn")
        assert model.input_gates is not None and model.packed_layers is not None
        got, (got_h, got_c) = packed_rows(
            model.input_gates, model.packed_layers, tokens, lengths, state
        )
    assert got.shape == want.shape
    for row, n in enumerate(lengths):
        assert got[row, n:].abs().sum() == 0
    torch.testing.assert_close(got, want, atol=5e-6, rtol=1e-5)
    torch.testing.assert_close(got_h, want_h, atol=5e-6, rtol=1e-5)
    torch.testing.assert_close(got_c, want_c, atol=5e-6, rtol=1e-5)


def test_bundled_model_prompts_take_packed_rows_when_wide() -> None:
    """The 2 x 200 model's prompt rows: narrow batches keep nn.LSTM (bit for bit), wide
    ones take ``packed_rows``; both agree with the default kernels' answers."""
    model = load(BUNDLED, torch.device("cpu")).model.eval()
    torch.manual_seed(5)
    for rows in (2, 8):  # 2 x 200 < MIN_ROWS_TIMES_HIDDEN <= 8 x 200
        lengths = [3 + (5 * i) % 11 for i in range(rows)]
        tokens = torch.randint(0, model.config.vocab_size, (rows, max(lengths)))
        state = model.initial_state(rows)
        outs = []
        for kernel in ("default", "onednn"):
            model.prepare_for_serving(kernel)
            with torch.inference_mode():
                outs.append(model.packed_hidden_states(tokens, lengths, state))
        (want, (want_h, _)), (got, (got_h, _)) = outs
        if rows * model.config.hidden_size < MIN_ROWS_TIMES_HIDDEN:
            assert torch.equal(got, want)  # the same nn.LSTM call either way
        else:
            assert not torch.equal(got, want)  # another summation order: packed_rows ran
        torch.testing.assert_close(got, want, atol=5e-6, rtol=1e-5)
        torch.testing.assert_close(got_h, want_h, atol=5e-6, rtol=1e-5)
