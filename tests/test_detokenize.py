"""``models.detokenize``: readable text that still reads back as the model's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data import read_lines, split_path
from models.detokenize import detokenize
from models.normalizer import Normalizer
from models.vocabulary import Vocabulary


@pytest.mark.parametrize(
    ("words", "text"),
    [
        ("britain 's", "britain's"),
        ("do n't", "don't"),
        ("ca n't stop", "can't stop"),
        ("wo n't", "won't"),
        ("they 're here and we 've been , i 'm sure", "they're here and we've been, i'm sure"),
        ("the investors ' money", "the investors' money"),
        ("<unk> 's rival", "<unk>'s rival"),
        ("sales rose N N to $ N million", "sales rose N N to $ N million"),
        ("the N 's", "the N 's"),
        ("at & t", "at & t"),
        ("rose N % .", "rose N%."),
        ("he said ( yes ) !", "he said (yes)!"),
        ('he said " no way " then', 'he said "no way" then'),
        ("state @-@ of 1 @,@ 000 and 3 @.@ 5", "state-of 1,000 and 3.5"),
        ("", ""),
    ],
)
def test_examples(words: str, text: str) -> None:
    assert detokenize(words.split()) == text


def test_eos_is_a_line_break_without_spaces() -> None:
    words = ["it", "rained", "<eos>", "the", "end", "<eos>"]
    assert detokenize(words) == "it rained\nthe end\n"
    assert detokenize(["<eos>", "'s", "n't"]) == "\n's n't"


def test_letters_are_never_changed() -> None:
    words = ["mr.", "<unk>", "N", "u.s.", "hydro-quebec"]
    assert detokenize(words) == "mr. <unk> N u.s. hydro-quebec"
    assert "".join(detokenize(words).split()) == "".join(words)


def test_accepts_any_iterable() -> None:
    assert detokenize(iter(["do", "n't"])) == "don't"


def test_odd_sequences_stay_readable() -> None:
    """A sampler can put clitics anywhere; none may merge into a different word."""
    assert detokenize(["'s", "'s", "n't"]) == "'s 's n't"
    assert detokenize(["N", "n't", "$", "'"]) == "N n't $ '"


def test_reads_back_as_the_same_words_on_ptb(ptb_vocabulary: Vocabulary, ptb_dir: Path) -> None:
    """Every valid-set sentence: the tokens a server returns for it, displayed, then fed
    back, are the same tokens."""
    normalizer = Normalizer("ptb")
    for line in read_lines(split_path(ptb_dir, "valid")):
        words = normalizer.words(line + "\n", ptb_vocabulary)
        assert normalizer.words(detokenize(words), ptb_vocabulary) == words, line


def test_generated_text_reads_back(ptb_vocabulary: Vocabulary) -> None:
    """Clitics in odd places (as a sampler writes them) read back too."""
    normalizer = Normalizer("ptb")
    vocabulary = ptb_vocabulary
    words = "<unk> 's N n't $ N 's ' do n't ca n't & 'll 're <eos> 's i 'd".split()
    assert normalizer.words(detokenize(words), vocabulary) == words
