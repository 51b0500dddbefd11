"""The word <-> id table that travels inside every checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

UNK = "<unk>"
EOS = "<eos>"


class Vocabulary:
    """An ordered list of words; a word's id is its index.

    The vocabulary always contains ``<unk>`` and ``<eos>``: words outside it map to
    ``<unk>``, and ``<eos>`` ends a sentence.
    """

    def __init__(self, words: Sequence[str]) -> None:
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        for special in (UNK, EOS):
            if special not in words:
                raise ValueError(f"vocabulary lacks the special token {special!r}")
        self._words = list(words)
        self._ids = {word: index for index, word in enumerate(self._words)}
        self.unk_id = self._ids[UNK]
        self.eos_id = self._ids[EOS]

    @classmethod
    def from_corpus(cls, lines: Iterable[str]) -> Vocabulary:
        """Build from training text: words in order of first appearance, ``<eos>`` first."""
        words: dict[str, None] = {EOS: None}
        for line in lines:
            for word in line.split():
                words.setdefault(word, None)
        words.setdefault(UNK, None)
        return cls(list(words))

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    @property
    def words(self) -> list[str]:
        return list(self._words)

    def id(self, word: str) -> int:
        """The id of ``word``, or of ``<unk>`` for a word outside the vocabulary."""
        return self._ids.get(word, self.unk_id)

    def encode(self, words: Iterable[str]) -> list[int]:
        return [self._ids.get(word, self.unk_id) for word in words]

    def word(self, token_id: int) -> str:
        return self._words[token_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self._words[i] for i in ids]
