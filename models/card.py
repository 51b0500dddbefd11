"""Render a checkpoint's ``MODEL_CARD.md`` from its ``config.json`` (one source of truth).

python -m models.card models/default
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.checkpoint import read_config

PUBLISHED = [
    ("Zaremba et al. 2014, small (2 x 200, no dropout)", "120.7", "114.5"),
    ("Zaremba et al. 2014, medium (2 x 650, dropout 0.5)", "86.2", "82.7"),
    ("Zaremba et al. 2014, large (2 x 1500, dropout 0.65)", "82.2", "78.4"),
]


def render(config: dict[str, Any]) -> str:
    """The whole card, section by section, from a checkpoint's config."""
    sections = [
        _header(config),
        _data(config),
        _architecture(config),
        _notes(config),
        _perplexity(config),
        _training_curve(config),
        _limits(config),
    ]
    return "\n".join(line for section in sections for line in section)


def _header(config: dict[str, Any]) -> list[str]:
    arch = config["architecture"]
    return [
        f"# Model card: {config['model_id']}",
        "",
        f"A word-level {arch['num_layers']}-layer LSTM language model, {arch['hidden_size']} "
        f"units per layer, {'tied' if arch['tied'] else 'untied'} input/output embeddings "
        f"({config.get('parameter_count', 0):,} parameters, vocabulary "
        f"{arch['vocab_size']:,}).",
        "",
    ]


def _data(config: dict[str, Any]) -> list[str]:
    card = config.get("card", {})
    return [
        "## Data",
        f"- Training data: {card.get('data', {}).get('name', '?')} (Mikolov's preprocessed Penn "
        "Treebank: 929k training tokens, 10k vocabulary). The text is not shipped (it derives "
        "from the LDC's Penn Treebank, Dow Jones text, research use); only weights are.",
        f"- Normalizer: `{config['normalizer']['kind']}` (lower case, PTB clitic splitting, "
        "digits -> `N`, unknown -> `<unk>`, newline -> `<eos>`).",
        "",
    ]


def _architecture(config: dict[str, Any]) -> list[str]:
    arch = config["architecture"]
    training = config.get("card", {}).get("training", {})
    hyper = training.get("hyperparameters", {})
    minutes = training.get("seconds", 0) / 60
    averaging = (
        [
            f"| weight averaging | running mean of the weights from epoch "
            f"{training['averaged_from_epoch']} on, lr fixed (NT-ASGD style; `--average`) |"
        ]
        if training.get("averaged_from_epoch")
        else []
    )
    return [
        "## Architecture and training",
        "| setting | value |",
        "| --- | --- |",
        f"| cell | {arch['cell']} (torch.nn.LSTM, checked against a reference cell) |",
        f"| layers x units | {arch['num_layers']} x {arch['hidden_size']} |",
        f"| embedding | {arch['embedding_size']}, tied: {arch['tied']} |",
        f"| dropout (input / between layers / output) | {arch['dropout_input']} / "
        f"{arch['dropout_hidden']} / {arch['dropout_output']} (locked, per sequence) |",
        f"| DropConnect on hidden-to-hidden weights | {arch['weight_drop']} |",
        f"| optimiser | SGD, lr {hyper.get('lr')}, divided by {hyper.get('lr_decay')} when "
        f"validation stalls ({hyper.get('schedule')}); clip {hyper.get('clip')} |",
        f"| batch x BPTT | {hyper.get('batch_size')} x {hyper.get('bptt')} |",
        *averaging,
        f"| epochs | {training.get('epochs')} (best validation kept) |",
        f"| training time | {minutes:.0f} min on {training.get('machine', '?')}, "
        f"{training.get('threads', '?')} torch threads, torch {training.get('torch', '?')} |",
        f"| recipe | `python -m models.train --recipe {training.get('recipe')}` |",
        f"| weights stored as | {config.get('storage_dtype', 'float32')} (served in float32) |",
        "",
    ]


def _notes(config: dict[str, Any]) -> list[str]:
    notes = config.get("card", {}).get("notes")
    return ["## How it was trained", *[f"- {note}" for note in notes], ""] if notes else []


def _perplexity(config: dict[str, Any]) -> list[str]:
    card = config.get("card", {})
    lines = [
        "## Perplexity (Penn Treebank)",
        "Measured as the papers do: the whole split as one stream, state carried "
        "(`python -m models.evaluate --checkpoint DIR --data ../shared/data/ptb --split test`).",
        "",
        "| model | valid | test |",
        "| --- | --- | --- |",
        f"| **this model** | **{card.get('valid_perplexity', '?')}** | "
        f"**{card.get('test_perplexity', '?')}** |",
        *_cache_row(card),
    ]
    lines += [f"| {name} | {valid} | {test} |" for name, valid, test in PUBLISHED]
    return lines + _cache_note(card)


def _cache_row(card: dict[str, Any]) -> list[str]:
    cache = card.get("continuous_cache")
    if not cache:
        return []
    return [
        f"| this model + continuous cache (theta {cache['theta']}, lambda {cache['lambda']}, "
        f"window {cache['window']}) | {card.get('valid_perplexity_cache', '?')} | "
        f"{card.get('test_perplexity_cache', '?')} |"
    ]


def _cache_note(card: dict[str, Any]) -> list[str]:
    if not card.get("continuous_cache"):
        return []
    return [
        "",
        "With the continuous cache (Grave, Joulin & Usunier 2016) the model's distribution is "
        "mixed with one over the words that followed the stream's most similar recent "
        "top-layer outputs; no retraining, theta, lambda and the window tuned on valid only "
        "(`python -m models.tune_cache --checkpoint DIR --data ../shared/data/ptb`; "
        "`python -m models.evaluate ... --cache`; see docs/CONTINUOUS_CACHE.md).",
    ]


def _training_curve(config: dict[str, Any]) -> list[str]:
    history = config.get("card", {}).get("training", {}).get("history", [])
    if not history:
        return []
    return [
        "",
        "## Training curve",
        "| epoch | learning rate | valid perplexity |",
        "| --- | --- | --- |",
        *[f"| {int(epoch)} | {lr:g} | {valid} |" for epoch, lr, valid in history],
    ]


def _limits(config: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Intended use and limits",
        "Next-word prediction, scoring and generation for English news-style text in PTB "
        "form; a 10k-word closed vocabulary, so rarer words are `<unk>`. Not for facts, "
        "safety-critical or user-facing text generation without review.",
        "",
        f"Weights sha256: `{config['weights']['sha256']}`",
        "",
    ]


def write_model_card(directory: Path) -> str:
    """Render ``directory``'s config into its ``MODEL_CARD.md``; return the text."""
    text = render(read_config(directory))
    (directory / "MODEL_CARD.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args(argv)
    print(write_model_card(args.checkpoint))


if __name__ == "__main__":
    main()
