"""The LSTM cell written from its equations (Colah's essay), to check the fused kernel.

    f_t = sigmoid(W_f [h_{t-1}, x_t] + b_f)        forget gate
    i_t = sigmoid(W_i [h_{t-1}, x_t] + b_i)        input gate
    C~_t = tanh(W_C [h_{t-1}, x_t] + b_C)          candidate
    C_t = f_t * C_{t-1} + i_t * C~_t
    o_t = sigmoid(W_o [h_{t-1}, x_t] + b_o)        output gate
    h_t = o_t * tanh(C_t)

``torch.nn.LSTM`` stores the four gates stacked in the order (i, f, g=C~, o) in
``weight_ih`` ``[4H, in]`` and ``weight_hh`` ``[4H, H]``, with two bias vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
) -> tuple[Tensor, Tensor]:
    """One step. ``x`` ``[B, in]``, ``h``/``c`` ``[B, H]`` -> new ``(h, c)``, each ``[B, H]``."""
    hidden = h.shape[-1]
    pre = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    w_i, w_f, w_g, w_o = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
    input_gate = torch.sigmoid(pre[:, w_i])
    forget_gate = torch.sigmoid(pre[:, w_f])
    candidate = torch.tanh(pre[:, w_g])
    output_gate = torch.sigmoid(pre[:, w_o])
    c_next = forget_gate * c + input_gate * candidate
    h_next = output_gate * torch.tanh(c_next)
    return h_next, c_next


def lstm_sequence(
    x: Tensor, h: Tensor, c: Tensor, weights: tuple[Tensor, Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the cell over ``x`` ``[B, T, in]``; returns outputs ``[B, T, H]`` and final h, c."""
    outputs = []
    for t in range(x.shape[1]):
        h, c = lstm_cell(x[:, t], h, c, *weights)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h, c


def rnn_cell(
    x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor
) -> Tensor:
    """Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b)."""
    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)


def gru_cell(
    x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor
) -> Tensor:
    """GRU (Cho et al. 2014), gates stacked (r, z, n) as in ``torch.nn.GRU``::

    r = sigmoid(W_r x + U_r h + b_r)            reset gate
    z = sigmoid(W_z x + U_z h + b_z)            update gate
    n = tanh(W_n x + b_in + r * (U_n h + b_hn)) candidate
    h_t = (1 - z) * n + z * h_{t-1}
    """
    hidden = h.shape[-1]
    gi = x @ weight_ih.T + bias_ih
    gh = h @ weight_hh.T + bias_hh
    reset = torch.sigmoid(gi[:, :hidden] + gh[:, :hidden])
    update = torch.sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
    candidate = torch.tanh(gi[:, 2 * hidden :] + reset * gh[:, 2 * hidden :])
    return (1 - update) * candidate + update * h


def peephole_lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor,
    peephole: Tensor,
) -> tuple[Tensor, Tensor]:
    """LSTM with peephole connections (Gers & Schmidhuber 2000): the gates see the cell.

        i = sigmoid(W_i [h, x] + p_i * C_{t-1} + b_i)
        f = sigmoid(W_f [h, x] + p_f * C_{t-1} + b_f)
        C_t = f * C_{t-1} + i * tanh(W_C [h, x] + b_C)
        o = sigmoid(W_o [h, x] + p_o * C_t + b_o)
        h_t = o * tanh(C_t)

    Gates stacked (i, f, g, o); ``peephole`` is ``[3, H]`` = (p_i, p_f, p_o).
    """
    return peephole_lstm_update(x @ weight_ih.T + h @ weight_hh.T + bias, c, peephole)


def peephole_lstm_update(pre: Tensor, c: Tensor, peephole: Tensor) -> tuple[Tensor, Tensor]:
    """The peephole cell from its gate pre-activations ``pre`` ``[B, 4H]`` (so a layer can
    project every time step's input in one product before the loop)."""
    hidden = c.shape[-1]
    input_gate = torch.sigmoid(pre[:, :hidden] + peephole[0] * c)
    forget_gate = torch.sigmoid(pre[:, hidden : 2 * hidden] + peephole[1] * c)
    c_next = forget_gate * c + input_gate * torch.tanh(pre[:, 2 * hidden : 3 * hidden])
    output_gate = torch.sigmoid(pre[:, 3 * hidden :] + peephole[2] * c_next)
    return output_gate * torch.tanh(c_next), c_next


def cifg_lstm_cell(
    x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor]:
    """Coupled input-forget gate LSTM: one gate decides both, i = 1 - f.

        f = sigmoid(W_f [h, x] + b_f)
        C_t = f * C_{t-1} + (1 - f) * tanh(W_C [h, x] + b_C)
        o = sigmoid(W_o [h, x] + b_o);  h_t = o * tanh(C_t)

    Gates stacked (f, g, o).
    """
    return cifg_lstm_update(x @ weight_ih.T + h @ weight_hh.T + bias, c)


def cifg_lstm_update(pre: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The coupled-gate cell from its gate pre-activations ``pre`` ``[B, 3H]``."""
    hidden = c.shape[-1]
    forget_gate = torch.sigmoid(pre[:, :hidden])
    c_next = forget_gate * c + (1 - forget_gate) * torch.tanh(pre[:, hidden : 2 * hidden])
    output_gate = torch.sigmoid(pre[:, 2 * hidden :])
    return output_gate * torch.tanh(c_next), c_next
