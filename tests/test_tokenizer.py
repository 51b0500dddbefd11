"""The tokenizer's word cache stays within its byte budget whatever clients send (#16 item 4)."""

from __future__ import annotations

import gc
import tracemalloc

from models.normalizer import Normalizer
from models.tokenizer import Tokenizer
from models.vocabulary import Vocabulary

PTB = Normalizer("ptb")
LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")


def unique_word(index: int, length: int) -> str:
    """A distinct all-letter word of ``length`` characters (no digits, so never ``N``)."""
    prefix = f"{index:x}".translate(LETTERS)
    return prefix + "x" * (length - len(prefix))


def test_long_unique_words_are_not_cached(ptb_vocabulary: Vocabulary) -> None:
    """1,000 unique 100k-character words (100 MB) leave nothing behind in the cache."""
    tokenizer = Tokenizer(PTB, ptb_vocabulary, cache_bytes=1_000_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(1_000):
            words, ids = tokenizer.encode(unique_word(index, 100_000))
            assert words == ["<unk>"] and ids == [ptb_vocabulary.unk_id]
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tokenizer.cached_tokens == 0
    assert tokenizer.cached_bytes == 0
    assert retained < 100_000  # less than one of the words


def test_cache_stays_within_its_bytes(ptb_vocabulary: Vocabulary) -> None:
    """Unique short words (up to the cached length) fill the cache, which never passes its
    budget, and memory actually held stays near what it accounts for."""
    budget = 50_000
    tokenizer = Tokenizer(PTB, ptb_vocabulary, cache_bytes=budget, max_cached_token_chars=64)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(5_000):
            tokenizer.encode(f"{unique_word(index, 1 + index % 64)} the company")
            assert tokenizer.cached_bytes <= budget
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tokenizer.cached_tokens > 0
    assert retained < 2 * budget


def test_results_do_not_depend_on_the_cache(ptb_vocabulary: Vocabulary) -> None:
    """Cached, uncached (too long) and evicted tokens all give the normalizer's answer."""
    text = "The company's 1990s sales rose. " + "(" * 70 + "mr." + ")" * 70 + " zzyzx"
    tiny = Tokenizer(PTB, ptb_vocabulary, cache_bytes=300, max_cached_token_chars=8)
    roomy = Tokenizer(PTB, ptb_vocabulary)
    expected = PTB.words(text, ptb_vocabulary)
    for _ in range(3):
        for tokenizer in (tiny, roomy):
            words, ids = tokenizer.encode(text)
            assert words == expected
            assert ids == ptb_vocabulary.encode(expected)
    assert tiny.cached_bytes <= 300
    assert roomy.cached_tokens == len(set(text.split())) - 1  # all but the 143-char token
