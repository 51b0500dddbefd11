"""Deterministic text -> words rules; each model ships its own inside its checkpoint.

The ``ptb`` rules reproduce Mikolov's Penn Treebank preprocessing closely enough that
raw English text lands on the model's vocabulary: lower-case, PTB clitic splitting
(``it's`` -> ``it 's``, ``don't`` -> ``do n't``), numbers -> ``N``, punctuation that PTB
dropped is dropped, and a newline ends a sentence (``<eos>``). The ``whitespace`` rules
(WikiText) only split on spaces, keeping case and punctuation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from models.vocabulary import EOS, UNK, Vocabulary

NUMBER = "N"
LITERAL_TOKENS = frozenset({UNK, EOS, NUMBER})
_CLITICS = ("'s", "'re", "'ve", "'ll", "'d", "'m")
_IRREGULAR_NEGATIONS = {"can't": ["ca", "n't"], "won't": ["wo", "n't"], "cannot": ["can", "not"]}
_LEADING_PUNCT = "\"'`([{$#"
_TRAILING_PUNCT = ".,;:!?\"')]}"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Normalizer:
    """Turns user text into the model's words.

    Attributes:
        kind: ``"ptb"`` or ``"whitespace"``.
        lowercase: fold case (``ptb`` always does).
    """

    kind: str = "ptb"
    lowercase: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("ptb", "whitespace"):
            raise ValueError(f"unknown normalizer kind {self.kind!r}")

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Normalizer:
        return cls(kind=str(config["kind"]), lowercase=bool(config.get("lowercase", True)))

    def words(self, text: str, vocabulary: Vocabulary | None = None) -> list[str]:
        """Split ``text`` into words; each line break becomes ``<eos>``.

        ``vocabulary``, when given, decides ambiguous cases (keep ``mr.`` but strip
        the full stop of ``end.``) and maps unknown words to ``<unk>``.
        """
        out: list[str] = []
        lines = LINE_BREAK.split(text)
        for index, line in enumerate(lines):
            for raw in line.split():
                out.extend(self._word(raw, vocabulary))
            if index < len(lines) - 1:
                out.append(EOS)
        if vocabulary is not None:
            out = [word if word in vocabulary else UNK for word in out]
        return out

    def _word(self, raw: str, vocabulary: Vocabulary | None) -> list[str]:
        if raw in LITERAL_TOKENS:
            return [raw]
        if self.kind == "whitespace":
            return [raw.lower() if self.lowercase else raw]
        return _ptb_word(raw.translate(_APOSTROPHES).lower(), vocabulary)


def _ptb_word(token: str, vocabulary: Vocabulary | None) -> list[str]:
    """PTB rules for one lower-cased whitespace token."""
    lead: list[str] = []
    while token and token[0] in _LEADING_PUNCT and not _known(token, vocabulary):
        lead.append(token[0])
        token = token[1:]
    trail: list[str] = []
    while token and token[-1] in _TRAILING_PUNCT and not _known(token, vocabulary):
        trail.insert(0, token[-1])
        token = token[:-1]
    middle = _split_clitics(token) if token else []
    words = [*lead, *middle, *trail]
    words = [NUMBER if any(ch.isdigit() for ch in word) else word for word in words]
    return [word for word in words if _kept(word, vocabulary)]


def _split_clitics(token: str) -> list[str]:
    if token in _IRREGULAR_NEGATIONS:
        return list(_IRREGULAR_NEGATIONS[token])
    if token.endswith("n't") and len(token) > 3:
        return [token[:-3], "n't"]
    for clitic in _CLITICS:
        if token.endswith(clitic) and len(token) > len(clitic):
            return [token[: -len(clitic)], clitic]
    return [token]


def _known(token: str, vocabulary: Vocabulary | None) -> bool:
    return vocabulary is not None and token in vocabulary


def _kept(word: str, vocabulary: Vocabulary | None) -> bool:
    """Punctuation-only words survive only where the vocabulary has them (``$``, ``&``)."""
    if any(ch.isalnum() for ch in word):
        return True
    if vocabulary is None:
        return word in ("$", "&", "'", "#")
    return word in vocabulary
