"""The shipped vocabulary is PTB train's, so tests may build tiny models without the data."""

from __future__ import annotations

from pathlib import Path

from models.data import read_lines, split_path
from models.vocabulary import Vocabulary


def test_shipped_vocabulary_is_the_one_built_from_ptb_train(
    ptb_vocabulary: Vocabulary, ptb_dir: Path
) -> None:
    """Same words in the same order: ids in the tiny test models mean what they would mean
    in a model trained on the text itself."""
    built = Vocabulary.from_corpus(read_lines(split_path(ptb_dir, "train")))
    assert ptb_vocabulary.words == built.words
