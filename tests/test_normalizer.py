"""The PTB normalizer on examples, and the whitespace one for WikiText."""

from __future__ import annotations

import pytest

from models.normalizer import Normalizer
from models.vocabulary import Vocabulary

PTB = Normalizer("ptb")


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
    words = PTB.words("Mr. Smith visited the U.S. in 1990s. Zyzzyva!", ptb_vocabulary)
    assert words == ["mr.", "smith", "visited", "the", "u.s.", "in", "N", "<unk>"]


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

    tokenizer = Tokenizer(PTB, ptb_vocabulary, cache_entries=3)
    for _ in range(2):  # cold, then from the cache (which also overflows and clears)
        words, ids = tokenizer.encode(text)
        assert words == PTB.words(text, ptb_vocabulary)
        assert ids == ptb_vocabulary.encode(words)
