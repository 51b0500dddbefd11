"""One OpenAI completion choice, built word by word: its text, stop strings, log-probs.

Text is the model's words joined as ``/v1/generate`` joins them (``results.word_pieces``),
so ``text_offset`` points at each word in it. A stop string ends the choice before its
first occurrence in the generated text (never in the echoed prompt); while streaming,
text that could still turn into a stop string is held back, and words leave whole, each
with its log-probs. An echo starts with the sentence start ``<eos>`` that the model
conditions on: like OpenAI's first token it has no log-prob (and no text), so the other
echoed log-probs sum to ``/v1/score``'s ``logprob`` of the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.engine.client import (
    FinishReason,
    GeneratedWord,
    Score,
    WordProbability,
    word_pieces,
)

SENTENCE_START = "<eos>"


@dataclass(frozen=True)
class ReportedWord:
    """A word of a choice as OpenAI's ``logprobs`` reports it."""

    word: str
    offset: int  # where it starts in the choice's text
    length: int  # characters it takes there (<eos> is a line break; the echo's first: 0)
    logprob: float | None
    top: dict[str, float] | None


@dataclass
class Choice:
    """Words of one choice so far; ``release`` hands out what may be sent."""

    index: int
    stops: list[str]
    with_logprobs: bool
    skip_eos: bool  # the <eos> that ended a generation is not part of its text
    text: str = ""
    words: list[ReportedWord] = field(default_factory=list)
    generated_from: int = 0  # where the generated text starts (after an echo)
    completion_tokens: int = 0
    finish_reason: str | None = None
    released_finish: bool = False  # the chunk with finish_reason has been sent
    _sent_chars: int = 0
    _sent_words: int = 0

    def echo(self, tokens: list[str], score: Score | None) -> None:
        """Start with the prompt (``score``: its log-probs, when they are asked for)."""
        self.words.append(ReportedWord(SENTENCE_START, 0, 0, None, None))
        if score is None:
            self._extend(tokens, [None] * len(tokens), [None] * len(tokens))
        else:
            tops = score.top or [None] * len(tokens)  # type: ignore[list-item]
            self._extend(tokens, list(score.token_logprobs), list(tops))
        self.generated_from = len(self.text)

    def add(self, word: GeneratedWord) -> None:
        """One generated word; sets ``finish_reason`` "stop" when a stop string appears."""
        self.completion_tokens += 1
        if self.finish_reason is not None:
            return
        if self.skip_eos and word.word == SENTENCE_START:
            return  # ends the generation; the engine says so next
        before = len(self.text)
        self._extend([word.word], [word.logprob], [word.top])
        self._find_stop(before)

    def finish(self, reason: FinishReason) -> None:
        if self.finish_reason is None:
            self.finish_reason = "length" if reason is FinishReason.LENGTH else "stop"

    def _extend(
        self,
        tokens: list[str],
        logprobs: list[float | None],
        tops: list[list[WordProbability] | None],
    ) -> None:
        for token, piece, logprob, top in zip(
            tokens, word_pieces(tokens, self.text), logprobs, tops, strict=True
        ):
            space = 1 if piece.startswith(" ") else 0
            reported = ReportedWord(
                token,
                len(self.text) + space,
                len(piece) - space,
                logprob,
                _top(token, logprob, top),
            )
            self.text += piece
            self.words.append(reported)

    def _find_stop(self, before: int) -> None:
        if not self.stops:
            return
        longest = max(len(stop) for stop in self.stops)
        start = max(self.generated_from, before - longest + 1)
        found = [i for i in (self.text.find(stop, start) for stop in self.stops) if i >= 0]
        if not found:
            return
        cut = min(found)
        self.text = self.text[:cut]
        self.words = [w for w in self.words if w.offset < cut or not w.length]
        self.finish_reason = "stop"

    # ---- what may leave --------------------------------------------------------------
    def release(self) -> tuple[str, list[ReportedWord]]:
        """Text and words not sent yet; while running, only whole words that cannot
        become part of a stop string."""
        end = len(self.text) if self.finish_reason is not None else self._safe_end()
        words = self.words[self._sent_words :]
        if self.finish_reason is None:
            words = [w for w in words if w.offset + w.length <= end]
            last = words[-1].offset + words[-1].length if words else 0
            end = max(self._sent_chars, last)
        text = self.text[self._sent_chars : end]
        self._sent_chars = max(self._sent_chars, end)
        self._sent_words += len(words)
        return text, words

    def _safe_end(self) -> int:
        """The text's length less the longest tail that begins some stop string."""
        for cut in range(max((len(s) for s in self.stops), default=1) - 1, 0, -1):
            tail = self.text[-cut:]
            if len(self.text) - cut >= self.generated_from and any(
                s.startswith(tail) for s in self.stops
            ):
                return len(self.text) - cut
        return len(self.text)

    def logprobs(self, words: list[ReportedWord]) -> dict[str, Any] | None:
        if not self.with_logprobs:
            return None
        return {
            "tokens": [w.word for w in words],
            "token_logprobs": [w.logprob for w in words],
            "top_logprobs": [w.top for w in words],
            "text_offset": [w.offset for w in words],
        }

    def payload(self) -> dict[str, Any]:
        """The whole choice (non-streaming answer)."""
        return {
            "index": self.index,
            "text": self.text,
            "logprobs": self.logprobs(self.words),
            "finish_reason": self.finish_reason,
        }


def _top(
    token: str, logprob: float | None, top: list[WordProbability] | None
) -> dict[str, float] | None:
    """OpenAI's ``top_logprobs`` entry: the alternatives plus the chosen word itself."""
    if logprob is None:
        return None
    out = {p.word: p.logprob for p in top or []}
    out.setdefault(token, logprob)
    return out
