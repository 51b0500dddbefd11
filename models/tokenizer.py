"""Text -> (words, ids) for one model: its normalizer and vocabulary, with a word cache.

Normalising is pure Python and runs for every request, so the per-token result (which
depends only on the raw token) is cached; real traffic repeats its words constantly.
"""

from __future__ import annotations

from models.normalizer import LINE_BREAK, Normalizer
from models.vocabulary import Vocabulary


class Tokenizer:
    def __init__(
        self, normalizer: Normalizer, vocabulary: Vocabulary, cache_entries: int = 100_000
    ) -> None:
        self.normalizer = normalizer
        self.vocabulary = vocabulary
        self.cache_entries = cache_entries
        self._cache: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}

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

    def _normalise(self, raw: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        found = self.normalizer.words(raw, self.vocabulary)
        entry = (tuple(found), tuple(self.vocabulary.encode(found)))
        if len(self._cache) >= self.cache_entries:
            self._cache.clear()
        self._cache[raw] = entry
        return entry
