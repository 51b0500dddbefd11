"""Model words -> readable text, for display (roughly the inverse of the PTB split).

The normalizer splits ``"Britain's"`` into ``britain 's`` and ``"don't"`` into ``do n't``;
answers keep those words in ``tokens``. People read ``britain's`` and ``don't`` more
easily, so :func:`detokenize` glues clitics and punctuation back on and writes ``<eos>``
as a line break. It never changes a word's letters: no capitals are invented, and ``N``
and ``<unk>`` stay as they are.

For the PTB normalizer the result reads back as the same words
(``Normalizer("ptb").words(detokenize(words), vocabulary) == words`` for the model's
text), so displayed text can still be fed to a session; ``tests/test_detokenize.py``
checks that on the Penn Treebank itself. That decides the cases below:

* Clitics (``'s 're 've 'll 'd 'm n't`` and PTB's possessive ``'``) attach to the word
  before when it has a letter in it: ``britain's``, ``don't``, ``investors'``; ``ca n't``
  and ``wo n't`` read ``can't`` and ``won't``. After ``N`` they stay apart (``N 's``):
  ``N's`` would read back as the word ``n``.
* ``$ N`` stays ``$ N``: ``N`` is a placeholder, not digits, and ``$N`` would read back
  as ``$ n``. ``&``, ``#`` and ``$`` are ordinary words.
* Closing punctuation (``, . ; : ! ? % ) ] }``) attaches to the word before and opening
  brackets to the word after; a plain ``"`` alternates between opening and closing, and
  WikiText's ``@-@ @,@ @.@`` join their neighbours (``1 @,@ 000`` -> ``1,000``). The PTB
  vocabulary has none of these; models with the ``whitespace`` normalizer do.
* ``<eos>`` -> ``"\\n"``, with no space on either side of the line break.
"""

from __future__ import annotations

from collections.abc import Iterable

EOS = "<eos>"
NUMBER = "N"
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't", "'"})
_CLOSING = frozenset({",", ".", ";", ":", "!", "?", "%", ")", "]", "}"})
_OPENING = frozenset({"(", "[", "{"})
_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}


def detokenize(words: Iterable[str]) -> str:
    """Join model words into display text.

    Args:
        words: the model's words, e.g. a generation's ``tokens``.

    Returns:
        The text, e.g. ``["britain", "'s", "chief", "did", "n't", "<eos>"]`` ->
        ``"britain's chief didn't\\n"``.
    """
    pieces: list[str] = []
    previous = EOS  # the word before; EOS also stands for "start of text"
    quote_open = False
    for word in words:
        if word == EOS:
            pieces.append("\n")
            previous, quote_open = EOS, False
            continue
        text = _JOINERS.get(word, word)
        if word == '"':
            attach = quote_open  # a closing quote attaches to the word before
            quote_open = not quote_open
        elif word in _CLITICS:
            attach = _takes_clitic(previous)  # "ca" + "n't" is "can't" by itself
        else:
            attach = word in _CLOSING or word in _JOINERS
        glued = previous == EOS or previous in _OPENING or previous in _JOINERS
        if previous == '"' and quote_open:  # just after an opening quote
            glued = True
        if not (attach or glued):
            pieces.append(" ")
        pieces.append(text)
        previous = word
    return "".join(pieces)


def _takes_clitic(previous: str) -> bool:
    """Whether ``previous`` + a clitic reads back as the two words (``N's`` would not)."""
    return (
        previous not in (NUMBER, EOS)
        and previous not in _CLITICS
        and any(ch.isalpha() for ch in previous)
        and not any(ch.isdigit() for ch in previous)
    )
