"""Corpus files -> token streams -> ``[batch, time]`` chunks for truncated BPTT.

Files are PTB / WikiText style: one sentence per line; ``<eos>`` is appended to every
line (empty ones too), the counting convention of Zaremba et al. and the PyTorch example.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.vocabulary import EOS, Vocabulary

SPLIT_FILES = {
    "train": ("ptb.train.txt", "train.txt", "wiki.train.tokens"),
    "valid": ("ptb.valid.txt", "valid.txt", "wiki.valid.tokens"),
    "test": ("ptb.test.txt", "test.txt", "wiki.test.tokens"),
}


def split_path(data_dir: Path, split: str) -> Path:
    """The file of ``split`` in ``data_dir`` (PTB or WikiText names)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_FILES)}")
    for name in SPLIT_FILES[split]:
        path = data_dir / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {split} file in {data_dir} (looked for {SPLIT_FILES[split]})")


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return handle.read().splitlines()


def line_tokens(lines: list[str]) -> list[str]:
    """Whitespace words of every line, each line closed by ``<eos>``."""
    words: list[str] = []
    for line in lines:
        words.extend(line.split())
        words.append(EOS)
    return words


def encode_file(path: Path, vocabulary: Vocabulary) -> Tensor:
    """The whole file as one int64 stream ``[N]``."""
    return torch.tensor(vocabulary.encode(line_tokens(read_lines(path))), dtype=torch.long)


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Cut a stream ``[N]`` into ``batch_size`` contiguous rows ``[B, N // B]``."""
    columns = stream.numel() // batch_size
    if columns < 2:
        raise ValueError(f"stream of {stream.numel()} tokens too short for batch {batch_size}")
    return stream[: columns * batch_size].view(batch_size, columns)


@dataclass(frozen=True)
class Chunk:
    inputs: Tensor  # [B, T]
    targets: Tensor  # [B, T]


def chunks(rows: Tensor, bptt: int) -> Iterator[Chunk]:
    """Consecutive ``[B, T]`` windows; the last may be shorter. State carries across them."""
    for start in range(0, rows.shape[1] - 1, bptt):
        length = min(bptt, rows.shape[1] - 1 - start)
        yield Chunk(rows[:, start : start + length], rows[:, start + 1 : start + 1 + length])
