"""Varied PTB-valid predict bodies (10-20 words, k=5), one file shared by every contender.

    python -m bench.http.bodies --out bench/out/bodies.jsonl

The issue-13 comparison sends the *same* bodies to the bare model, the engine alone,
lstm-serve over HTTP and LitServe, so the ratios compare servers, not inputs. Lines come
from the PTB test split (every word in the bundled vocabulary, no ``<unk>``), sampled with a
fixed seed; the file holds one JSON request body per line, which ``wrk_bodies.lua`` reads
and the in-process benchmarks tokenise once up front.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from bench.serverproc import ROOT

DEFAULT_PTB = ROOT.parent / "shared" / "data" / "ptb" / "ptb.test.txt"
DEFAULT_OUT = ROOT / "bench" / "out" / "bodies.jsonl"


def ptb_sentences(path: Path, min_words: int = 10, max_words: int = 20) -> list[str]:
    """Lines of ``min_words``..``max_words`` words without ``<unk>``."""
    lines = (line.split() for line in path.read_text().splitlines())
    return [
        " ".join(words)
        for words in lines
        if min_words <= len(words) <= max_words and "<unk>" not in words
    ]


def write_bodies(ptb: Path, out: Path, count: int = 512, k: int = 5, seed: int = 0) -> Path:
    sentences = ptb_sentences(ptb)
    chosen = random.Random(seed).sample(sentences, min(count, len(sentences)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps({"text": s, "k": k}) + "\n" for s in chosen))
    return out


def read_texts(path: Path) -> list[str]:
    """The ``text`` of every body in a file that ``write_bodies`` wrote."""
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptb", type=Path, default=DEFAULT_PTB)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--count", type=int, default=512)
    args = parser.parse_args(argv)
    print(write_bodies(args.ptb, args.out, args.count))


if __name__ == "__main__":
    main()
