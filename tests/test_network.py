"""The network's invariants: fused equals reference, steps equal sequences, rows independent."""

from __future__ import annotations

from typing import Any

import torch

from models.config import ModelConfig
from models.network import LanguageModel
from models.reference_cell import lstm_sequence


def _model(seed: int = 0, **kwargs: object) -> LanguageModel:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=50, embedding_size=12, hidden_size=12, num_layers=2, **kwargs)  # type: ignore[arg-type]
    return LanguageModel(config).eval()


def test_reference_cell_equals_fused_lstm() -> None:
    torch.manual_seed(1)
    layer = torch.nn.LSTM(7, 5, batch_first=True)
    x = torch.randn(3, 9, 7)
    h0, c0 = torch.randn(1, 3, 5), torch.randn(1, 3, 5)
    fused_out, (fused_h, fused_c) = layer(x, (h0, c0))
    weights = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    ref_out, ref_h, ref_c = lstm_sequence(x, h0[0], c0[0], weights)
    torch.testing.assert_close(ref_out, fused_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ref_h, fused_h[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ref_c, fused_c[0], atol=1e-6, rtol=1e-5)


def test_reference_cell_gate_order_matters() -> None:
    """Swapping two gates' rows changes the result, so the equality above is meaningful."""
    torch.manual_seed(2)
    layer = torch.nn.LSTM(4, 3, batch_first=True)
    x, h0, c0 = torch.randn(2, 5, 4), torch.zeros(2, 3), torch.zeros(2, 3)
    w_ih = layer.weight_ih_l0.detach().clone()
    w_ih[[0, 1, 2, 3, 4, 5]] = w_ih[[3, 4, 5, 0, 1, 2]]  # swap input and forget gate
    weights = (w_ih, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    swapped, _, _ = lstm_sequence(x, h0, c0, weights)
    fused, _ = layer(x, (h0[None], c0[None]))
    assert not torch.allclose(swapped, fused, atol=1e-4)


def test_step_by_step_equals_whole_sequence() -> None:
    model = _model()
    tokens = torch.randint(0, 50, (3, 11))
    with torch.no_grad():
        whole, whole_state = model(tokens)
        state = model.initial_state(3)
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = model(tokens[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[0], whole_state[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state[1], whole_state[1], atol=1e-6, rtol=1e-5)


def test_batched_rows_equal_rows_alone() -> None:
    model = _model(seed=3)
    tokens = torch.randint(0, 50, (4, 8))
    h0, c0 = torch.randn(2, 4, 12), torch.randn(2, 4, 12)
    with torch.no_grad():
        batched, (bh, bc) = model(tokens, (h0, c0))
        for row in range(4):
            alone, (ah, ac) = model(
                tokens[row : row + 1], (h0[:, row : row + 1], c0[:, row : row + 1])
            )
            torch.testing.assert_close(alone[0], batched[row], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ah[:, 0], bh[:, row], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(ac[:, 0], bc[:, row], atol=1e-6, rtol=1e-5)


def test_shapes_and_tied_weights() -> None:
    model = _model(tied=True)
    logits, (h, c) = model(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 50)
    assert h.shape == c.shape == (2, 2, 12)
    assert model.decoder.weight is model.embedding.weight


def test_dropout_only_in_training() -> None:
    model = _model(dropout_input=0.5, dropout_hidden=0.5, dropout_output=0.5, weight_drop=0.5)
    tokens = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        first, _ = model(tokens)
        second, _ = model(tokens)
        torch.testing.assert_close(first, second)
        model.train()
        noisy, _ = model(tokens)
    assert not torch.allclose(noisy, first)


def test_weight_drop_keeps_gradient_to_recurrent_weights() -> None:
    model = _model(weight_drop=0.3).train()
    logits, _ = model(torch.randint(0, 50, (2, 6)))
    logits.sum().backward()
    grad = model.layers[0].weight_hh_l0.grad
    assert grad is not None and grad.abs().sum() > 0


def test_a_model_prepared_for_serving_steps_the_same_from_its_input_gate_table() -> None:
    model = _model(seed=4)
    plain = _model(seed=4)
    model.prepare_for_serving()
    assert model.input_gates is not None and model.input_gates.shape == (50, 48)
    assert "input_gates" not in model.state_dict()  # never saved with the weights
    tokens = torch.randint(0, 50, (6, 1))
    state = (torch.randn(2, 6, 12), torch.randn(2, 6, 12))
    with torch.inference_mode():
        top, (h, c) = model.packed_hidden_states(tokens, [1] * 6, state)
        ref_top, (ref_h, ref_c) = plain.packed_hidden_states(tokens, [1] * 6, state)
        model.input_gates.zero_()  # the step must read the table: a zeroed one differs
        zeroed, _ = model.packed_hidden_states(tokens, [1] * 6, state)
    torch.testing.assert_close(top, ref_top, rtol=0, atol=1e-6)
    torch.testing.assert_close((h, c), (ref_h, ref_c), rtol=0, atol=1e-6)
    assert not torch.allclose(zeroed, ref_top, atol=1e-3)


def test_preparing_a_gru_for_serving_builds_no_table() -> None:
    model = _model(cell="gru")
    model.prepare_for_serving()
    assert model.input_gates is None


def test_with_the_table_a_large_one_word_batch_steps_from_it_and_agrees_with_nn_lstm() -> None:
    model = _model(seed=5)
    plain = _model(seed=5)  # past 64 rows it runs nn.LSTM
    model.prepare_for_serving()
    assert model.input_gates is not None
    rows = 100
    tokens = torch.randint(0, 50, (rows, 1))
    state = (torch.randn(2, rows, 12), torch.randn(2, rows, 12))
    with torch.inference_mode():
        top, (h, c) = model.packed_hidden_states(tokens, [1] * rows, state)
        ref_top, (ref_h, ref_c) = plain.packed_hidden_states(tokens, [1] * rows, state)
        model.input_gates.zero_()
        zeroed, _ = model.packed_hidden_states(tokens, [1] * rows, state)
    torch.testing.assert_close(top, ref_top, rtol=0, atol=1e-5)
    torch.testing.assert_close((h, c), (ref_h, ref_c), rtol=0, atol=1e-5)
    assert not torch.allclose(zeroed, ref_top, atol=1e-3)


def test_rows_of_one_and_two_tokens_step_like_each_row_alone(monkeypatch: Any) -> None:
    """A batch of one- and two-token rows (session feeds: a word, a clitic, a word and its
    <eos>) runs as one-token steps (``_short_rows``), not packed, with the same results
    as each row alone through ``nn.LSTM``, zeros past each row's end."""
    calls: list[int] = []
    short_rows = LanguageModel._short_rows

    def spy(self: LanguageModel, *args: Any) -> Any:
        calls.append(1)
        return short_rows(self, *args)

    monkeypatch.setattr(LanguageModel, "_short_rows", spy)
    for serving in (False, True):
        model = _model(seed=5)
        if serving:
            model.prepare_for_serving()  # the first layer's gates from the table
        tokens = torch.randint(0, 50, (5, 2))
        lengths = [1, 2, 1, 2, 1]
        h0, c0 = torch.randn(2, 5, 12), torch.randn(2, 5, 12)
        with torch.inference_mode():
            out, (h, c) = model.packed_hidden_states(tokens, lengths, (h0, c0))
            for row, n in enumerate(lengths):
                alone, (ah, ac) = model.hidden_states(
                    tokens[row : row + 1, :n], (h0[:, row : row + 1], c0[:, row : row + 1])
                )
                torch.testing.assert_close(out[row, :n], alone[0], atol=1e-5, rtol=1e-5)
                assert torch.all(out[row, n:] == 0)
                torch.testing.assert_close(h[:, row], ah[:, 0], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(c[:, row], ac[:, 0], atol=1e-5, rtol=1e-5)
    assert len(calls) == 2
    with torch.inference_mode():  # a three-token row: packed, as before
        model.packed_hidden_states(torch.randint(0, 50, (2, 3)), [3, 1], (h0[:, :2], c0[:, :2]))
    assert len(calls) == 2
