"""The bundled models: they load, and each card's perplexity is reproducible here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from models.checkpoint import load
from models.data import encode_file, split_path
from models.evaluate import mean_nll
from service.settings import DEFAULT_MODEL_PATH

MEDIUM_MODEL_PATH = DEFAULT_MODEL_PATH.parent / "medium"


@pytest.mark.parametrize(
    ("path", "size", "target"),
    [(DEFAULT_MODEL_PATH, 200, 88.0), (MEDIUM_MODEL_PATH, 650, 76.0)],
    ids=["default-2x200", "medium-2x650"],
)
def test_bundled_model_matches_its_card(
    path: Path, size: int, target: float, ptb_dir: Path
) -> None:
    checkpoint = load(path)
    config = checkpoint.model.config
    assert (config.num_layers, config.hidden_size, config.tied) == (2, size, True)
    assert checkpoint.normalizer.kind == "ptb"
    recorded = checkpoint.card["test_perplexity"]
    assert recorded <= target
    stream = encode_file(split_path(ptb_dir, "test"), checkpoint.vocabulary)
    measured = math.exp(mean_nll(checkpoint.model, stream))
    assert abs(measured - recorded) < 0.01, (measured, recorded)
    assert f"**{recorded}**" in (path / "MODEL_CARD.md").read_text()
    assert (path / "model.safetensors").stat().st_size <= 30_000_000  # repository limit


@pytest.mark.integration
def test_medium_model_serves_through_the_api(tmp_path: Path) -> None:
    """The float16-stored 2 x 650 model serves in float32 and predicts sensibly."""
    import httpx

    from tests.serverproc import running_server

    env = {"LSTM_SERVE_MODEL_PATH": str(MEDIUM_MODEL_PATH)}
    with running_server(env, tmp_path / "server.log") as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        card = http.get("/v1/models").json()
        assert card["id"] == "ptb-lstm-2x650-tied"
        assert (card["hidden_size"], card["dtype"]) == (650, "float32")
        assert card["test_perplexity"] <= 76.0
        answer = http.post("/v1/predict", json={"text": "the company 's chief executive", "k": 5})
        words = [entry["word"] for entry in answer.json()["predictions"]]
        assert "officer" in words, words
