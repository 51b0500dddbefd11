"""The model card an API process shows at ``/v1/models``, and the text rules it needs."""

from __future__ import annotations

from typing import Any

from models.checkpoint import Checkpoint


def model_card(checkpoint: Checkpoint, device: str) -> dict[str, Any]:
    model, card = checkpoint.model, checkpoint.card
    config = model.config
    return {
        "id": checkpoint.model_id,
        "architecture": config.cell,
        "cell": config.cell,
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "embedding_size": config.embedding_size,
        "vocab_size": config.vocab_size,
        "parameters": model.parameter_count(),
        "tied_weights": config.tied,
        "training_data": card.get("data", {}).get("name"),
        "normalizer": checkpoint.normalizer.kind,
        "valid_perplexity": card.get("valid_perplexity"),
        "test_perplexity": card.get("test_perplexity"),
        "valid_perplexity_cache": card.get("valid_perplexity_cache"),
        "test_perplexity_cache": card.get("test_perplexity_cache"),
        "continuous_cache": _cache_numbers(card.get("continuous_cache")),
        "device": device,
        "dtype": str(model.embedding.weight.dtype).split(".")[-1],
        "weights_sha256": checkpoint.weights_sha256,
    }


def _cache_numbers(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """theta, lambda and window of sessions created with ``{"cache": true}``."""
    if not entry:
        return None
    return {name: entry[name] for name in ("theta", "lambda", "window")}


def text_rules(checkpoint: Checkpoint) -> dict[str, Any]:
    """The vocabulary and normalizer: an API process normalises text itself."""
    return {
        "vocabulary": checkpoint.vocabulary.words,
        "normalizer": checkpoint.normalizer.to_config(),
    }
