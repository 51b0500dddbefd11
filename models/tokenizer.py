"""Text -> (words, ids) for one model: its normalizer and vocabulary, with a word cache.

Normalising is pure Python and runs for every request, so the per-token result (which
depends only on the raw token) is cached; real traffic repeats its words constantly.
Clients choose what is sent, so the cache is bounded by bytes, not entries, and a raw
token longer than any word that repeats in real text is normalised but never cached.
"""

from __future__ import annotations

import sys
import threading

from models.normalizer import LINE_BREAK, Normalizer
from models.vocabulary import Vocabulary

# A dict entry's share of the hash table (slot, index, growth slack), on top of its objects.
_SLOT_BYTES = 100

_Entry = tuple[tuple[str, ...], tuple[int, ...]]


class Tokenizer:
    """A model's normalizer and vocabulary behind a bounded per-token cache.

    Args:
        normalizer: the model's text rules.
        vocabulary: the model's words; cached words are the vocabulary's own strings.
        cache_bytes: the most memory the cache accounts for (raw tokens, tuples, table
            slots); when an entry would pass it, the cache is emptied and refills with
            what traffic repeats.
        max_cached_token_chars: raw tokens longer than this are normalised every time
            (no vocabulary word is near this long; such tokens do not repeat).
    """

    def __init__(
        self,
        normalizer: Normalizer,
        vocabulary: Vocabulary,
        cache_bytes: int = 4 * 1024 * 1024,
        max_cached_token_chars: int = 64,
    ) -> None:
        self.normalizer = normalizer
        self.vocabulary = vocabulary
        self.cache_bytes = cache_bytes
        self.max_cached_token_chars = max_cached_token_chars
        self._cache: dict[str, _Entry] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()  # encode runs on worker threads; guards the accounting

    @property
    def cached_bytes(self) -> int:
        """Bytes the cache accounts for now (always <= ``cache_bytes``)."""
        return self._cached_bytes

    @property
    def cached_tokens(self) -> int:
        return len(self._cache)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        """The words the model will see (``<unk>`` for unknown ones) and their ids."""
        words: list[str] = []
        ids: list[int] = []
        eos = self.vocabulary.eos_id
        lines = LINE_BREAK.split(text)
        for index, line in enumerate(lines):
            for raw in line.split():
                entry = self._cache.get(raw)
                if entry is None:
                    entry = self._normalise(raw)
                words.extend(entry[0])
                ids.extend(entry[1])
            if index < len(lines) - 1:
                words.append("<eos>")
                ids.append(eos)
        return words, ids

    def _normalise(self, raw: str) -> _Entry:
        found = self.normalizer.words(raw, self.vocabulary)
        ids = tuple(self.vocabulary.encode(found))
        # The vocabulary's own strings (``found`` holds fresh slices of ``raw``).
        entry = (tuple(self.vocabulary.decode(ids)), ids)
        if len(raw) > self.max_cached_token_chars:
            return entry
        cost = _entry_bytes(raw, entry)
        if cost > self.cache_bytes:
            return entry
        with self._lock:
            if self._cached_bytes + cost > self.cache_bytes:
                self._cache.clear()
                self._cached_bytes = 0
            if raw not in self._cache:
                self._cache[raw] = entry
                self._cached_bytes += cost
        return entry


def _entry_bytes(raw: str, entry: _Entry) -> int:
    """Memory one cache entry holds: key, tuples and table slot (the words and ids
    themselves are the vocabulary's objects)."""
    words, ids = entry
    return (
        sys.getsizeof(raw)
        + sys.getsizeof(entry)
        + sys.getsizeof(words)
        + sys.getsizeof(ids)
        + _SLOT_BYTES
    )
