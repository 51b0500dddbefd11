"""Deterministic text -> words rules; each model ships its own inside its checkpoint.

The ``ptb`` rules reproduce Mikolov's Penn Treebank preprocessing closely enough that
raw English text lands on the model's vocabulary: lower-case, PTB clitic splitting
(``it's`` -> ``it 's``, ``don't`` -> ``do n't``), numbers -> ``N``, punctuation that PTB
dropped is dropped, and a newline ends a sentence (``<eos>``). A word the vocabulary
knows is kept as it is (``1990s``, ``cray-3``, ``mr.``), so the model's own output fed
back gives the same tokens. Time is linear in the text's length, whatever its shape.
The ``whitespace`` rules (WikiText) only split on spaces, keeping case and punctuation.
"""

from __future__ import annotations

import re
import weakref
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
    """PTB rules for one lower-cased whitespace token, in time linear in its length.

    Punctuation is peeled off by moving two indices, and a candidate is looked up only
    while it is no longer than the vocabulary's longest word, so a token of 100k
    punctuation characters costs 100k steps, not 100k lookups of 100k-character strings.
    A word the vocabulary knows is kept as it is (``1990s``, ``friday-the-13th``), so the
    model's own words round-trip.
    """
    facts = _facts(vocabulary)
    longest = facts.longest_word_chars

    def known(begin: int, end: int) -> bool:
        return end - begin <= longest and _known(token[begin:end], vocabulary)

    # Past the longest word nothing is known, so a run of marks is skipped at C speed
    # down to that length, then peeled one mark at a time as PTB's rules say.
    size = len(token)
    begin = min(size - len(token.lstrip(_LEADING_PUNCT)), max(0, size - longest))
    while begin < size and token[begin] in _LEADING_PUNCT and not known(begin, size):
        begin += 1
    end = min(size, max(len(token.rstrip(_TRAILING_PUNCT)), begin + longest))
    while end > begin and token[end - 1] in _TRAILING_PUNCT and not known(begin, end):
        end -= 1
    middle: list[str] = []
    if begin < end and known(begin, end):
        middle = [token[begin:end]]
    elif begin < end:
        middle = [_number(word, vocabulary) for word in _split_clitics(token[begin:end])]
        middle = [word for word in middle if _kept(word, vocabulary)]
    # Peeled marks become words only where the vocabulary has them (``$``, ``'``).
    return [
        *token[:begin].translate(facts.dropped_punct),
        *middle,
        *token[end:].translate(facts.dropped_punct),
    ]


@dataclass(frozen=True)
class _VocabularyFacts:
    """What the PTB rules need to know about a vocabulary beyond membership."""

    longest_word_chars: int  # no longer string can be a vocabulary word
    dropped_punct: dict[int, None]  # str.translate table: deletes marks that are no word


def _facts(vocabulary: Vocabulary | None) -> _VocabularyFacts:
    """Computed once per vocabulary (its words never change), kept while it lives."""
    if vocabulary is None:
        return _NO_VOCABULARY
    facts = _FACTS.get(vocabulary)
    if facts is None:
        facts = _VocabularyFacts(
            longest_word_chars=max((len(word) for word in vocabulary.words), default=0),
            dropped_punct=_dropped(vocabulary),
        )
        _FACTS[vocabulary] = facts
    return facts


def _number(word: str, vocabulary: Vocabulary | None) -> str:
    """``N`` for a word with a digit, unless the vocabulary knows it (``1990s``, ``cray-3``)."""
    if _has_digit(word) and not _known(word, vocabulary):
        return NUMBER
    return word


def _has_digit(word: str) -> bool:
    # isalpha first: one C pass settles the common all-letters word.
    return not word.isalpha() and any(map(str.isdigit, word))


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
    if any(map(str.isalnum, word)):
        return True
    if vocabulary is None:
        return word in ("$", "&", "'", "#")
    return word in vocabulary


_PEELED = frozenset(_LEADING_PUNCT + _TRAILING_PUNCT)


def _dropped(vocabulary: Vocabulary | None) -> dict[int, None]:
    return {ord(ch): None for ch in _PEELED if not _kept(ch, vocabulary)}


_NO_VOCABULARY = _VocabularyFacts(longest_word_chars=0, dropped_punct=_dropped(None))
# Derived, immutable facts per live Vocabulary (no request data; an entry dies with its
# vocabulary). A cache, not state: recomputing an entry gives the same value.
_FACTS: weakref.WeakKeyDictionary[Vocabulary, _VocabularyFacts] = weakref.WeakKeyDictionary()
