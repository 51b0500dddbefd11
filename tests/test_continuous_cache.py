"""The continuous cache (Grave et al. 2016): its invariants on tiny random models, and the
bundled model's tuned cache on a slice of PTB valid."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional

from models import evaluate, tune_cache
from models.card import render
from models.checkpoint import load, read_config
from models.continuous_cache import (
    KEY_DTYPE,
    CacheParams,
    CacheWindow,
    cached_log_probs,
    mix_log_probs,
    scatter_cache_probs,
    segment_attention,
    segment_log_probs,
    stack_windows,
)
from models.data import encode_file, split_path
from models.evaluate import cached_mean_nll, mean_nll
from models.network import LanguageModel
from models.vocabulary import Vocabulary
from tests.conftest import ROOT, make_checkpoint

torch.set_num_threads(1)
DEFAULT_MODEL_PATH = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path):
    return load(tiny_checkpoint)


@pytest.fixture(scope="module")
def valid_slice(tiny, ptb_dir: Path) -> torch.Tensor:
    """The first 600 tokens of PTB valid (several sentences, repeated words)."""
    return encode_file(split_path(ptb_dir, "valid"), tiny.vocabulary)[:600]


def random_step(batch: int = 4, width: int = 7, hidden: int = 5, vocab: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(torch.randn(batch, vocab, generator=generator), dim=-1)
    query = torch.randn(batch, hidden, generator=generator)
    keys = torch.randn(batch, width, hidden, generator=generator).to(KEY_DTYPE)
    words = torch.randint(vocab, (batch, width), generator=generator)
    valid = torch.rand(batch, width, generator=generator) < 0.6
    valid[0] = False  # an empty window
    valid[1] = True
    return log_probs, query, keys, words, valid


def test_mixture_sums_to_one() -> None:
    log_probs, query, keys, words, valid = random_step()
    for lam in (0.0, 0.1, 0.5, 1.0):
        mixed = cached_log_probs(log_probs, query, keys, words, valid, CacheParams(2.0, lam, 7))
        torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(4), rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[0], log_probs[0], rtol=0, atol=0)  # empty window


def test_segment_mixture_sums_to_one(tiny, valid_slice: torch.Tensor) -> None:
    model = tiny.model
    with torch.inference_mode():
        hidden, _ = model.hidden_states(valid_slice[:-1].unsqueeze(0))
        log_probs = functional.log_softmax(model.decoder(hidden[0]), dim=-1)
    mixed = segment_log_probs(
        log_probs[40:], hidden[0, 40:], valid_slice[41:], hidden[0, :40], valid_slice[1:41],
        CacheParams(1.0, 0.3, 25),
    )  # fmt: skip
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(mixed.shape[0]), atol=1e-5, rtol=0)


def test_the_mixture_is_the_papers_formula() -> None:
    """p = (1 - lam) p_model + lam sum_{i: x_{i+1} = w} softmax_i(theta h . h_i), by hand."""
    log_probs, query, keys, words, valid = random_step()
    theta, lam = 1.3, 0.2
    mixed = cached_log_probs(log_probs, query, keys, words, valid, CacheParams(theta, lam, 7))
    for row in range(1, 4):  # rows with a cache
        scores = theta * (keys[row].double() @ query[row].double())
        attention = torch.softmax(scores[valid[row]], dim=0)
        cache = torch.zeros(log_probs.shape[1], dtype=torch.float64)
        cache.index_add_(0, words[row][valid[row]], attention)
        expected = (1 - lam) * log_probs[row].double().exp() + lam * cache
        torch.testing.assert_close(mixed[row].double().exp(), expected, rtol=1e-5, atol=1e-7)
        seen = cache > 0  # words in the window gain over (1 - lam) p_model, others get it
        assert (mixed[row][seen] > log_probs[row][seen] + math.log1p(-lam)).all()
        torch.testing.assert_close(mixed[row][~seen], log_probs[row][~seen] + math.log1p(-lam))


def test_a_repeated_word_gains_probability(tiny) -> None:
    """'ssangyong' is rare; seen once in the session it is far likelier the second time."""
    words = "the ssangyong group said it will sell its shares . analysts said the".split()
    tokens = torch.tensor(tiny.vocabulary.encode([*words, "ssangyong"]))

    def last_word_nll(params: CacheParams) -> float:  # all tokens' total minus the prefix's
        def total(stream: torch.Tensor) -> float:
            return cached_mean_nll(tiny.model, stream, params) * (stream.numel() - 1)

        return total(tokens) - total(tokens[:-1])

    plain = last_word_nll(CacheParams(theta=1.0, lam=0.0, window=100))
    for theta in (0.0, 1.0):
        cached = last_word_nll(CacheParams(theta=theta, lam=0.2, window=100))
        assert cached < plain - 1.0, (theta, cached, plain)


def test_lambda_zero_is_the_model_bit_for_bit(tiny, valid_slice: torch.Tensor) -> None:
    params = CacheParams(theta=1.0, lam=0.0, window=50)
    for bptt in (64, 256):
        assert cached_mean_nll(tiny.model, valid_slice, params, bptt) == mean_nll(
            tiny.model, valid_slice, bptt=bptt
        )
    log_probs, _, _, words, valid = random_step()
    probs = scatter_cache_probs(torch.softmax(torch.randn(4, 7), -1), words, log_probs.shape[1])
    assert torch.equal(mix_log_probs(log_probs, probs, valid.any(-1), 0.0), log_probs)


def test_the_cache_predicts_the_word_that_followed_a_similar_state() -> None:
    """Pairs are (h_i, x_{i+1}): a query equal to h_0 points at target 0, not at x_0."""
    queries = torch.eye(4) * 4  # orthogonal outputs ...
    queries[3] = queries[0]  # ... and step 3 repeats step 0's state
    weights, has_cache = segment_attention(queries, torch.empty(0, 4), window=10, theta=5.0)
    assert has_cache.tolist() == [False, True, True, True]
    assert weights[3].argmax() == 0 and weights[3, 0] > 0.99
    assert weights[3, 3] == 0  # never its own key
    targets = torch.tensor([7, 8, 9, 5])  # the word after each step
    mixed = segment_log_probs(
        torch.full((4, 10), -math.log(10)), queries, targets, torch.empty(0, 4),
        torch.empty(0, dtype=torch.long), CacheParams(5.0, 0.5, 10),
    )  # fmt: skip
    assert mixed[3].argmax() == 7


def test_window_limits_the_keys() -> None:
    queries = torch.ones(6, 3)
    weights, _ = segment_attention(queries, torch.ones(4, 3), window=3, theta=1.0)
    assert (weights > 0).sum(-1).tolist() == [3] * 6
    assert (weights[5, 6:9] > 0).all() and weights[5, :6].sum() == 0


def step_by_step_nll(model: LanguageModel, stream: torch.Tensor, params: CacheParams) -> float:
    """A session fed one token at a time through ``CacheWindow`` and ``cached_log_probs``."""
    window = CacheWindow(params.window, model.config.hidden_size)
    state, total = model.initial_state(1), 0.0
    with torch.inference_mode():
        for position in range(stream.numel() - 1):
            token = stream[position : position + 1]
            output, state = model.hidden_states(token.view(1, 1), state)
            window.extend(output[0], token)
            log_probs = functional.log_softmax(model.decoder(window.pending), -1).unsqueeze(0)
            keys, words, valid = stack_windows([window])
            mixed = cached_log_probs(log_probs, window.pending[None], keys, words, valid, params)
            total -= mixed[0, stream[position + 1]].item()
    return total / (stream.numel() - 1)


def test_offline_evaluation_equals_a_session_fed_word_by_word(tiny, valid_slice) -> None:
    stream, params = valid_slice[:150], CacheParams(theta=1.5, lam=0.25, window=40)
    offline = cached_mean_nll(tiny.model, stream, params, bptt=32)
    assert offline == pytest.approx(step_by_step_nll(tiny.model, stream, params), rel=1e-5)
    assert offline < mean_nll(tiny.model, stream)  # a random model gains from repeats


def test_feeds_through_a_cache_window_equal_the_offline_stream(tiny, valid_slice) -> None:
    """Scoring feeds of uneven lengths with ``segment_log_probs`` as the server would."""
    model, stream, params = tiny.model, valid_slice[:120], CacheParams(0.7, 0.2, 30)
    window, state = CacheWindow(params.window, 16), model.initial_state(1)
    total, cuts = 0.0, [0, 1, 9, 10, 47, 48, 90, 120]
    with torch.inference_mode():
        for start, stop in itertools.pairwise(cuts):
            tokens = stream[start:stop]
            outputs, state = model.hidden_states(tokens.view(1, -1), state)
            queries, targets = outputs[0, :-1], tokens[1:]
            if window.pending is not None:  # the first token is predicted at the pending h
                queries, targets = torch.cat([window.pending[None], queries]), tokens
            log_probs = functional.log_softmax(model.decoder(queries), -1)
            mixed = segment_log_probs(
                log_probs, queries, targets, window.keys, window.words, params
            )
            total -= mixed.gather(1, targets[:, None]).sum().item()
            window.extend(outputs[0], tokens)
            assert window.words.numel() == min(stop - 1, params.window)
    offline = cached_mean_nll(model, stream, params)
    assert total / (stream.numel() - 1) == pytest.approx(offline, rel=1e-5)


def test_cache_window_and_stacking() -> None:
    window = CacheWindow(window=3, hidden_size=2)
    window.extend(torch.arange(4.0).view(2, 2), torch.tensor([5, 6]))
    assert window.words.tolist() == [6] and window.pending.tolist() == [2.0, 3.0]
    window.extend(torch.ones(3, 2), torch.tensor([7, 8, 9]))
    assert window.words.tolist() == [7, 8, 9]
    assert window.keys.dtype == KEY_DTYPE and window.keys[0].tolist() == [2.0, 3.0]
    assert window.nbytes == 3 * 2 * 2 + 3 * 8 + 2 * 4
    short = CacheWindow(window=3, hidden_size=2)
    short.extend(torch.ones(2, 2), torch.tensor([1, 2]))
    keys, words, valid = stack_windows([window, short, CacheWindow(3, 2)])
    assert keys.shape == (3, 3, 2) and words[1].tolist() == [0, 0, 2]
    assert valid.tolist() == [[True] * 3, [False, False, True], [False] * 3]


def test_params_validate_and_round_trip() -> None:
    params = CacheParams(theta=0.5, lam=0.1, window=500)
    assert CacheParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    for bad in ({"lam": 1.5}, {"window": 0}, {"theta": -1.0}, {"theta": math.nan}):
        with pytest.raises(ValueError):
            CacheParams(**{"theta": 0.5, "lam": 0.1, "window": 5, **bad})


def test_grid_matches_the_exact_evaluation(tiny, valid_slice: torch.Tensor) -> None:
    outputs = tune_cache.stream_outputs(tiny.model, valid_slice)
    thetas, windows, lambdas = [0.5, 2.0], [20, 300], [0.1, 0.3]
    probs, has_cache = tune_cache.target_cache_probs(outputs, thetas, windows, block=64)
    nll = tune_cache.grid_nll(outputs, probs, has_cache, lambdas)
    assert -outputs.target_log_probs.double().mean().item() == pytest.approx(
        mean_nll(tiny.model, valid_slice), rel=1e-6
    )
    for k, w, j in [(0, 0, 0), (1, 1, 1), (1, 0, 1)]:
        params = CacheParams(thetas[k], lambdas[j], windows[w])
        exact = cached_mean_nll(tiny.model, valid_slice, params)
        assert nll[k, w, j].item() == pytest.approx(exact, rel=1e-5)


def write_split_slices(directory: Path, ptb_dir: Path, lines: int = 60) -> Path:
    directory.mkdir()
    for split in ("valid", "test"):
        text = split_path(ptb_dir, split).read_text().splitlines()[:lines]
        (directory / f"ptb.{split}.txt").write_text("\n".join(text) + "\n")
    return directory


def test_tune_and_evaluate_write_the_card_not_the_weights(
    tmp_path: Path,
    ptb_vocabulary: Vocabulary,
    ptb_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ckpt", ptb_vocabulary)
    data = write_split_slices(tmp_path / "data", ptb_dir)
    evaluate.main(["--checkpoint", str(checkpoint), "--data", str(data), "--split", "valid"])
    weights = read_config(checkpoint)["weights"]
    grid = ["--thetas", "0.5", "1", "--lambdas", "0.1", "0.2", "--windows", "50", "200"]
    tune_cache.main(["--checkpoint", str(checkpoint), "--data", str(data), *grid])
    config = read_config(checkpoint)
    card, tuned = config["card"], config["card"]["continuous_cache"]
    assert config["weights"] == weights
    assert tuned["window"] in (50, 200) and tuned["tuned_on"] == "valid"
    assert card["valid_perplexity_cache"] < card["valid_perplexity"]
    capsys.readouterr()
    evaluate.main(["--checkpoint", str(checkpoint), "--data", str(data), "--cache"])
    printed = capsys.readouterr().out
    assert f"with the cache {card['test_perplexity_cache']:.2f}" in printed
    model_card = (checkpoint / "MODEL_CARD.md").read_text()
    assert f"window {tuned['window']}) | {card['valid_perplexity_cache']} |" in model_card
    assert model_card == render(read_config(checkpoint))


def test_evaluate_cache_needs_settings(
    tmp_path: Path, ptb_vocabulary: Vocabulary, ptb_dir: Path
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ckpt", ptb_vocabulary)
    data = write_split_slices(tmp_path / "data", ptb_dir, lines=5)
    with pytest.raises(SystemExit, match=r"models\.tune_cache"):
        evaluate.main(["--checkpoint", str(checkpoint), "--data", str(data), "--cache"])
    args = ["--cache-theta", "1", "--cache-lambda", "0.1", "--cache-window", "100"]
    evaluate.main(["--checkpoint", str(checkpoint), "--data", str(data), "--cache", *args])
    assert "test_perplexity_cache" not in read_config(checkpoint)["card"]  # not tuned values


@pytest.mark.parametrize(
    ("path", "target"), [(DEFAULT_MODEL_PATH, 80.0), (DEFAULT_MODEL_PATH.parent / "medium", 70.0)]
)
def test_bundled_cards_record_the_cache_and_meet_the_targets(path: Path, target: float) -> None:
    card = read_config(path)["card"]
    CacheParams.from_dict(card["continuous_cache"])
    assert card["test_perplexity_cache"] <= target < card["test_perplexity"]
    assert card["valid_perplexity_cache"] < card["valid_perplexity"]


def test_bundled_model_gains_from_its_tuned_cache_on_a_slice_of_valid(ptb_dir: Path) -> None:
    checkpoint = load(DEFAULT_MODEL_PATH)
    params = CacheParams.from_dict(checkpoint.card["continuous_cache"])
    stream = encode_file(split_path(ptb_dir, "valid"), checkpoint.vocabulary)[:2000]
    plain = mean_nll(checkpoint.model, stream)
    cached = cached_mean_nll(checkpoint.model, stream, params)
    assert math.exp(cached) < 0.93 * math.exp(plain), (math.exp(cached), math.exp(plain))
    off = CacheParams(params.theta, 0.0, params.window)
    assert cached_mean_nll(checkpoint.model, stream, off) == plain
