"""The PTB normalizer on examples, and the whitespace one for WikiText."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from models.checkpoint import read_config
from models.normalizer import Normalizer
from models.vocabulary import Vocabulary

PTB = Normalizer("ptb")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("It's 1999", ["it", "'s", "N"]),
        ("The clouds are in the", ["the", "clouds", "are", "in", "the"]),
        ("I don't know, they won't go.", ["i", "do", "n't", "know", "they", "wo", "n't", "go"]),
        ("We can't; you're right!", ["we", "ca", "n't", "you", "'re", "right"]),
        ("It costs $5.50 (about 3,000 yen)", ["it", "costs", "$", "N", "about", "N", "yen"]),
        ("first line\nsecond", ["first", "line", "<eos>", "second"]),
        ("ends with newline\n", ["ends", "with", "newline", "<eos>"]),
        ("", []),
        ("   ", []),
        ("<unk> N <eos> stay", ["<unk>", "N", "<eos>", "stay"]),
        ("Smith\u2019s \u201cquote\u201d", ["smith", "'s", "quote"]),
        ("AT&T and R&D", ["at&t", "and", "r&d"]),
    ],
)
def test_ptb_examples_without_vocabulary(text: str, words: list[str]) -> None:
    assert PTB.words(text) == words


def test_vocabulary_decides_abbreviations_and_unknowns(ptb_vocabulary: Vocabulary) -> None:
    words = PTB.words("Mr. Smith visited the U.S. in 1999. Zyzzyva!", ptb_vocabulary)
    assert words == ["mr.", "smith", "visited", "the", "u.s.", "in", "N", "<unk>"]


def test_known_words_with_digits_are_kept(ptb_vocabulary: Vocabulary) -> None:
    """#16 item 9: the digit rule applies only to words the vocabulary lacks."""
    words = PTB.words("In the 1990s, 52-week highs; 1999 (Cray-3) and cray-4.", ptb_vocabulary)
    assert words == ["in", "the", "1990s", "52-week", "highs", "N", "cray-3", "and", "N"]
    assert PTB.words("the 1990s and cray-3") == ["the", "N", "and", "N"]  # no vocabulary


def test_every_vocabulary_word_round_trips() -> None:
    """#16 item 9: the shipped model's words, joined and normalised again, are unchanged."""
    vocabulary = Vocabulary(read_config(DEFAULT_MODEL)["vocabulary"])
    words = vocabulary.words
    changed = {word: PTB.words(word, vocabulary) for word in words}
    assert {word: got for word, got in changed.items() if got != [word]} == {}
    assert PTB.words(" ".join(words), vocabulary) == words


def test_deterministic_and_idempotent(ptb_vocabulary: Vocabulary) -> None:
    text = "The company's shares rose 5% to $12 on Tuesday.\nAnalysts weren't surprised."
    once = PTB.words(text, ptb_vocabulary)
    assert once == PTB.words(text, ptb_vocabulary)
    # Generated text is fed back as it is: normalising the joined words changes nothing.
    again = PTB.words(" ".join(once).replace(" <eos> ", "\n"), ptb_vocabulary)
    assert again == once


def test_whitespace_keeps_case_and_punctuation() -> None:
    wiki = Normalizer("whitespace", lowercase=False)
    assert wiki.words("The Battle @-@ of , 1999 .\nNext") == [
        "The",
        "Battle",
        "@-@",
        "of",
        ",",
        "1999",
        ".",
        "<eos>",
        "Next",
    ]


def test_config_round_trip() -> None:
    for normalizer in (PTB, Normalizer("whitespace", lowercase=False)):
        assert Normalizer.from_config(normalizer.to_config()) == normalizer
    with pytest.raises(ValueError, match="unknown normalizer"):
        Normalizer("bpe")


@pytest.mark.parametrize(
    "text",
    [
        "It's 1999",
        "a\nb",
        "a\n",
        "\n",
        "",
        "x\r\ny",
        "a\n\nb",
        "a\rb",
        "tail \n\n",
        "Mr. Smith's dog can't go.\n  next line  ",
        "line\u2028sep",
        "zzqx unknown-words here",
    ],
)
def test_cached_tokenizer_equals_normalizer(text: str, ptb_vocabulary: Vocabulary) -> None:
    from models.tokenizer import Tokenizer

    tokenizer = Tokenizer(PTB, ptb_vocabulary, cache_bytes=600)
    for _ in range(2):  # cold, then from the cache (which also overflows and clears)
        words, ids = tokenizer.encode(text)
        assert words == PTB.words(text, ptb_vocabulary)
        assert ids == ptb_vocabulary.encode(words)


class CountingVocabulary(Vocabulary):
    """A vocabulary that counts its lookups and the characters they hash."""

    def __init__(self, words: list[str]) -> None:
        super().__init__(words)
        self.lookups = 0
        self.hashed_chars = 0

    def __contains__(self, word: object) -> bool:
        self.lookups += 1
        self.hashed_chars += len(word) if isinstance(word, str) else 0
        return super().__contains__(word)


LONG_TOKEN_SHAPES = {
    "full stops": lambda n: "." * n,
    "opening brackets": lambda n: "(" * n,
    "apostrophes": lambda n: "'" * n,
    "brackets around": lambda n: "(" * (n // 2) + ")" * (n // 2),
    "word then marks": lambda n: "x" + "." * n,
    "marks then word": lambda n: "$" * n + "x",
    "marks around a known word": lambda n: "(" * (n // 2) + "mr." + "." * (n // 2),
    "letters": lambda n: "a" * n,
    "alternating": lambda n: ".a" * (n // 2),
    "digits": lambda n: "1" * n,
    "clitic tail": lambda n: "a" * n + "'s",
    "dashes and digits": lambda n: "1-" * (n // 2),
}


@pytest.mark.parametrize("shape", sorted(LONG_TOKEN_SHAPES))
def test_normalising_is_linear(shape: str, ptb_vocabulary: Vocabulary) -> None:
    """#16 item 3: a 100k-character token costs O(n) lookup work, not O(n^2).

    Peeling one mark at a time with a lookup of the rest hashed ~n^2/2 characters
    (5e9 for 100k full stops, seconds of CPU); the bound here is a few per character.
    """
    vocabulary = CountingVocabulary(ptb_vocabulary.words)
    for size in (10_000, 100_000):
        vocabulary.lookups = vocabulary.hashed_chars = 0
        text = LONG_TOKEN_SHAPES[shape](size)
        words = PTB.words(text, vocabulary)
        assert vocabulary.lookups <= 4 * size + 100, (shape, size)
        assert vocabulary.hashed_chars <= 4 * size + 100, (shape, size)
        assert len(words) <= size + 2


def reference_ptb_word(token: str, vocabulary: Vocabulary | None) -> list[str]:
    """The PTB rules as first written (a mark at a time, quadratic), with #16's digit fix."""
    from models.normalizer import _LEADING_PUNCT, _TRAILING_PUNCT, _kept, _split_clitics

    def known(word: str) -> bool:
        return vocabulary is not None and word in vocabulary

    lead: list[str] = []
    while token and token[0] in _LEADING_PUNCT and not known(token):
        lead.append(token[0])
        token = token[1:]
    trail: list[str] = []
    while token and token[-1] in _TRAILING_PUNCT and not known(token):
        trail.insert(0, token[-1])
        token = token[:-1]
    middle = ([token] if known(token) else _split_clitics(token)) if token else []
    words = [*lead, *middle, *trail]
    words = [
        "N" if any(ch.isdigit() for ch in word) and not known(word) else word for word in words
    ]
    return [word for word in words if _kept(word, vocabulary)]


def test_equals_the_reference_rules(ptb_vocabulary: Vocabulary) -> None:
    """Random tokens built from marks, letters, digits, clitics and known words with marks."""
    from models.normalizer import _ptb_word

    pieces = [*".,;:!?\"')]}([{$#`&-", "a", "x", "1", "9", "'s", "n't", "mr.", "u.s.",
              "'80s", "1990s", "cray-3", "us$", "inc.", "'", "s", "...", "(("]  # fmt: skip
    rng = random.Random(16)
    for _ in range(5000):
        token = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        for vocabulary in (ptb_vocabulary, None):
            assert _ptb_word(token, vocabulary) == reference_ptb_word(token, vocabulary), token
