"""Training lowers the loss; evaluation equals a hand computation; the CLI trains and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from models import evaluate, train
from models.checkpoint import load
from models.config import ModelConfig
from models.data import batchify, chunks, encode_file, line_tokens
from models.network import LanguageModel
from models.presets import RECIPES
from models.vocabulary import Vocabulary

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the bird sang a song",
    "my cat ate the fish",
    "a dog saw the cat",
]


def _corpus(directory: Path, repeat: int = 40) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.txt", repeat), ("valid.txt", 4), ("test.txt", 4)):
        lines = [f" {SENTENCES[i % len(SENTENCES)]} " for i in range(count * len(SENTENCES))]
        (directory / name).write_text("\n".join(lines) + "\n")
    return directory


def test_batchify_and_chunks() -> None:
    rows = batchify(torch.arange(23), 4)
    assert rows.tolist()[1] == [5, 6, 7, 8, 9]
    pieces = list(chunks(rows, 3))
    assert [p.inputs.shape[1] for p in pieces] == [3, 1]
    assert torch.equal(pieces[0].targets, rows[:, 1:4])


def test_line_tokens_append_eos() -> None:
    assert line_tokens([" a b ", "", "c"]) == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]


def test_a_few_training_steps_lower_the_loss(tmp_path: Path) -> None:
    data = _corpus(tmp_path / "data")
    vocabulary = Vocabulary.from_corpus((data / "train.txt").read_text().splitlines())
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(len(vocabulary), 16, 16, tied=True))
    rows = batchify(encode_file(data / "train.txt", vocabulary), 4)
    stream = encode_file(data / "valid.txt", vocabulary)
    before = evaluate.mean_nll(model, stream)
    for _ in range(3):
        train.train_epoch(model, rows, RECIPES["tiny"], lr=5.0)
    after = evaluate.mean_nll(model, stream)
    assert after < before - 0.5, (before, after)


def test_evaluate_matches_hand_computation() -> None:
    torch.manual_seed(4)
    model = LanguageModel(ModelConfig(7, 6, 6)).eval()
    stream = torch.tensor([0, 3, 5, 1, 6, 2, 0, 4, 4, 0])
    total = 0.0
    state = model.initial_state(1)
    with torch.no_grad():
        for t in range(len(stream) - 1):
            logits, state = model(stream[t : t + 1].view(1, 1), state)
            probs = torch.softmax(logits[0, 0].double(), dim=-1)
            total -= math.log(probs[stream[t + 1]].item())
    by_hand = total / (len(stream) - 1)
    assert abs(evaluate.mean_nll(model, stream, bptt=4) - by_hand) < 1e-5


def test_cli_trains_keeps_best_evaluates_and_resumes(tmp_path: Path, capsys) -> None:
    data = _corpus(tmp_path / "data", repeat=10)
    out = tmp_path / "run"
    train.main(
        [
            "--recipe",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--normalizer",
            "whitespace",
            "--device",
            "cpu",
        ]
    )
    best = load(out / "best")
    assert best.card["training"]["epochs"] == 1
    assert best.card["valid_perplexity"] > 1
    train.main(
        [
            "--recipe",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--resume",
            str(out / "last"),
            "--device",
            "cpu",
        ]
    )
    assert load(out / "last").card["training"]["epochs"] == 2
    evaluate.main(["--checkpoint", str(out / "best"), "--data", str(data), "--split", "test"])
    printed = capsys.readouterr().out
    reported = float(printed.split("test perplexity ")[1].split()[0])
    card = json.loads((out / "best" / "config.json").read_text())["card"]
    assert card["test_perplexity"] == round(reported, 2)


def test_weight_average_is_the_mean_and_swaps_back() -> None:
    from models.averaging import WeightAverage

    model = torch.nn.Linear(3, 2)
    first = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    average.update()
    second = [p.detach().clone() for p in model.parameters()]
    with average.swapped_in():
        for parameter, a, b in zip(model.parameters(), first, second, strict=True):
            torch.testing.assert_close(parameter, (a + b) / 2)
    for parameter, b in zip(model.parameters(), second, strict=True):
        torch.testing.assert_close(parameter, b)


def test_cli_trains_with_weight_averaging(tmp_path: Path) -> None:
    data = _corpus(tmp_path / "data", repeat=10)
    out = tmp_path / "avg"
    train.main(
        [
            "--recipe",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--average",
        ]
    )
    card = load(out / "best").card
    assert card["training"]["averaged_from_epoch"] == 1
    assert card["training"]["lr"] == RECIPES["tiny"].lr  # fixed while averaging


def test_continuing_average_weighs_the_earlier_iterates() -> None:
    from models.averaging import WeightAverage

    model, mean = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    raw = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage.continuing(model, mean, count=3)
    average.update()  # a 4th iterate: the model's current weights
    with average.swapped_in():
        for parameter, m, r in zip(model.parameters(), mean.parameters(), raw, strict=True):
            torch.testing.assert_close(parameter, (3 * m + r) / 4)


def test_resumed_average_extends_the_previous_one(tmp_path: Path) -> None:
    data = _corpus(tmp_path / "data", repeat=10)
    out, more = tmp_path / "avg", tmp_path / "more"
    common = ["--recipe", "tiny", "--data", str(data), "--device", "cpu", "--average"]
    train.main([*common, "--out", str(out), "--epochs", "2"])
    train.main(
        [
            *common,
            "--out",
            str(more),
            "--epochs",
            "3",
            "--resume",
            str(out / "last"),
            "--average-from",
            str(out / "best"),
        ]
    )
    card = load(more / "last").card
    assert card["training"]["epochs"] == 3
    assert card["training"]["averaged_from_epoch"] == 1  # the average still starts at epoch 1


def test_zaremba_rates_restated_for_a_mean_loss() -> None:
    """One SGD step on the per-token mean with (lr * T, clip / T) equals one step on
    Zaremba's per-sequence sum with (lr, clip)."""
    from models.presets import _zaremba

    steps, batch, vocab = 5, 3, 11
    scaled = _zaremba(steps, 1.0, 0.5)
    torch.manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, steps + 1))
    results = []
    for summed in (True, False):
        torch.manual_seed(1)
        model = LanguageModel(ModelConfig(vocab, 4, 4, num_layers=1, tied=True))
        logits, _ = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1), reduction="sum"
        )
        loss = loss / batch if summed else loss / (batch * steps)
        loss.backward()
        clip, lr = (0.5, 1.0) if summed else (scaled["clip"], scaled["lr"])
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(parameter.grad, alpha=-lr)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
