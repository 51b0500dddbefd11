"""Architecture and training hyper-parameters, as plain dataclasses that round-trip JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

CELL_TYPES = ("rnn", "lstm", "lstm_peephole", "lstm_cifg", "gru")


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape and its (train-time only) regularisation.

    Attributes:
        vocab_size: words in the vocabulary (rows of the embedding).
        embedding_size: width of a word vector.
        hidden_size: width of every recurrent layer.
        num_layers: stacked recurrent layers.
        tied: the decoder reuses the embedding matrix (Press & Wolf 2016); needs
            ``embedding_size == hidden_size``.
        cell: recurrent cell type (rnn, lstm, lstm_peephole, lstm_cifg, gru).
        dropout_input: locked (variational) dropout on the word vectors.
        dropout_hidden: locked dropout between recurrent layers.
        dropout_output: locked dropout before the decoder.
        weight_drop: DropConnect on the hidden-to-hidden weights (Merity et al. 2017).
    """

    vocab_size: int
    embedding_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    tied: bool = True
    cell: str = "lstm"
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    dropout_output: float = 0.0
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELL_TYPES:
            raise ValueError(f"unknown cell type {self.cell!r}; known: {', '.join(CELL_TYPES)}")
        if min(self.vocab_size, self.embedding_size, self.hidden_size, self.num_layers) < 1:
            raise ValueError("sizes must be positive")
        if self.tied and self.embedding_size != self.hidden_size:
            raise ValueError("tied weights need embedding_size == hidden_size")
        for name in ("dropout_input", "dropout_hidden", "dropout_output", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")

    @property
    def cell_state_size(self) -> int:
        """Width of ``c``: the hidden size for the LSTM family, 0 for rnn/gru (h only)."""
        return 0 if self.cell in ("rnn", "gru") else self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture fields: {sorted(unknown)}")
        return cls(**data)
