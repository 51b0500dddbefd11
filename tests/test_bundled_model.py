"""The bundled default model: loads, serves, and its card's perplexity is reproducible."""

from __future__ import annotations

import math

from models.checkpoint import load
from models.data import encode_file, split_path
from models.evaluate import mean_nll
from service.settings import DEFAULT_MODEL_PATH
from tests.conftest import PTB_DIR


def test_bundled_model_matches_its_card() -> None:
    checkpoint = load(DEFAULT_MODEL_PATH)
    config = checkpoint.model.config
    assert (config.num_layers, config.hidden_size, config.tied) == (2, 200, True)
    assert checkpoint.normalizer.kind == "ptb"
    recorded = checkpoint.card["test_perplexity"]
    stream = encode_file(split_path(PTB_DIR, "test"), checkpoint.vocabulary)
    measured = math.exp(mean_nll(checkpoint.model, stream))
    assert abs(measured - recorded) < 0.01, (measured, recorded)
    assert (DEFAULT_MODEL_PATH / "MODEL_CARD.md").is_file()
    assert f"**{recorded}**" in (DEFAULT_MODEL_PATH / "MODEL_CARD.md").read_text()
