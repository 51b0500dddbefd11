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
