"""The engine benchmark's session feeds: the words the WebSocket load sends, fed to the
engine alone, so that issue 13's WebSocket ratio compares the same work."""

from __future__ import annotations

import json
from pathlib import Path

from bench.loadgen.texts import TextSource
from bench.micro import engine_bench
from bench.micro.workload import feed_words, workload
from models.checkpoint import load
from models.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "default"


def test_loadgen_feed_ids_are_the_words_the_load_generator_sends() -> None:
    checkpoint = load(DEFAULT_MODEL)
    feeds = feed_words(checkpoint, workload(checkpoint, None), "loadgen")
    tokenizer = Tokenizer(checkpoint.normalizer, checkpoint.vocabulary)
    source = TextSource(0)
    words = [source.next_word() for _ in range(len(feeds.ids))]
    assert feeds.texts == words
    assert feeds.ids == [tokenizer.encode(word)[1] for word in words]
    ids = feeds.ids
    two = sum(len(feed) == 2 for feed in ids)
    assert all(1 <= len(feed) <= 2 for feed in ids)
    assert 0.03 < two / len(ids) < 0.15  # clitics and sentence ends (<eos>)


def test_feeds_of_loadgen_words_through_the_engine(tmp_path: Path) -> None:
    out = tmp_path / "feeds.json"
    engine_bench.main(
        [
            "--model",
            str(DEFAULT_MODEL),
            "--parts",
            "feeds",
            "--feed-words",
            "loadgen",
            "--feed-sessions",
            "8",
            "--feed-concurrency",
            "8",
            "--duration-s",
            "0.5",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    feeds = json.loads(out.read_text())["feeds"][0]
    assert feeds["words"] == "loadgen" and feeds["sessions"] == 8
    assert 1.0 < feeds["tokens_per_feed"] < 1.2
    assert feeds["requests"] > 0 and feeds["feeds_per_s"] > 0
