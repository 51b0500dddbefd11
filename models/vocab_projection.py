"""The decoder's projection onto the vocabulary, cut into blocks of vocabulary rows.

On the CPU, MKL's sgemm multiplies a serving batch by the whole ``[V, H]`` decoder weight
at about two thirds of the speed of the same product cut into blocks of 512 vocabulary
rows, once the weight outgrows the cache (medians of 12 interleaved rounds, 2-vCPU AMD
EPYC, MKL 2024.2, one torch thread, ``V`` = 10,000):

=====  ======  =============  ==============
  H     rows    one ``addmm``  512-row blocks
=====  ======  =============  ==============
 650      4       7.3 ms          5.0 ms
 650     25      17.6 ms         11.1 ms
 650     64      19.0 ms         14.0 ms
 650    256      60.2 ms         44.4 ms
 200      4       1.1 ms          1.3 ms
 200     25       4.5 ms          4.3 ms
 200     64       7.9 ms          5.8 ms
 200    256      18.0 ms         14.9 ms
=====  ======  =============  ==============

Where oneDNN is the faster kernel (``models.packed_linear``: on AMD CPUs with AVX-512 it
was 2.4-2.9x these blocks), ``LanguageModel.project`` uses its packed weight instead, and
this module serves the CPUs where MKL is as fast, other devices, and training.

Each logit is the same dot product over ``H`` either way, so the results are bit-identical
(``tests/test_vocab_projection.py``). Small weights (the 8 MB of 2 x 200, which the L3
cache holds) gain nothing on a few rows, so they keep one call below ``MIN_ROWS``. Other
devices, and anything that needs a gradient, keep ``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BLOCK_ROWS = 512
LARGE_WEIGHT_BYTES = 16 << 20  # above this, blocks pay from 2 rows up (table above)
MIN_ROWS = 32  # below this, a small weight's one call is as fast or faster


def blocks_pay(decoder: nn.Linear, hidden: Tensor) -> bool:
    """Whether cutting ``hidden @ weight.T`` into vocabulary blocks is faster here."""
    weight = decoder.weight
    if hidden.device.type != "cpu" or hidden.dim() != 2 or hidden.shape[0] < 2:
        return False
    if torch.is_grad_enabled() and (weight.requires_grad or hidden.requires_grad):
        return False
    large = weight.numel() * weight.element_size() > LARGE_WEIGHT_BYTES
    return large or hidden.shape[0] >= MIN_ROWS


def project(decoder: nn.Linear, hidden: Tensor) -> Tensor:
    """Logits ``[N, V]`` for hidden vectors ``[N, H]``: ``decoder(hidden)``, bit for bit."""
    if not blocks_pay(decoder, hidden):
        return decoder(hidden)
    weight, bias = decoder.weight, decoder.bias
    out = hidden.new_empty(hidden.shape[0], weight.shape[0])
    for start in range(0, weight.shape[0], BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        block = out[:, start:stop]
        if bias is None:
            torch.mm(hidden, weight[start:stop].t(), out=block)
        else:
            torch.addmm(bias[start:stop], hidden, weight[start:stop].t(), out=block)
    return out
