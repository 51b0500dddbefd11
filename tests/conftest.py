"""Shared fixtures: tiny random checkpoints (PTB vocabulary) built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import Checkpoint, save
from models.config import ModelConfig
from models.data import read_lines, split_path
from models.network import LanguageModel
from models.normalizer import Normalizer
from models.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data"
PTB_DIR = DATA_DIR / "ptb"


def make_checkpoint(
    directory: Path,
    vocabulary: Vocabulary,
    *,
    hidden: int = 16,
    layers: int = 2,
    seed: int = 0,
    model_id: str = "tiny-test",
    **architecture: object,
) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(vocabulary),
        embedding_size=hidden,
        hidden_size=hidden,
        num_layers=layers,
        **architecture,
    )  # type: ignore[arg-type]
    model = LanguageModel(config)
    # Sharper than the default init, so a random model has a peaked distribution.
    torch.nn.init.uniform_(model.embedding.weight, -1.0, 1.0)
    save(
        Checkpoint(model, vocabulary, Normalizer("ptb"), model_id, {"data": {"name": "random"}}),
        directory,
    )
    return directory


@pytest.fixture(scope="session")
def ptb_vocabulary() -> Vocabulary:
    if not PTB_DIR.is_dir():
        pytest.fail(f"the PTB data is needed at {PTB_DIR} (see README)")
    return Vocabulary.from_corpus(read_lines(split_path(PTB_DIR, "train")))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, ptb_vocabulary: Vocabulary) -> Path:
    """A 2 x 16 tied LSTM with the PTB vocabulary and random weights."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", ptb_vocabulary)


@pytest.fixture(scope="session")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real ``python -m service`` on 127.0.0.1 serving the tiny model."""
    from tests.serverproc import running_server

    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_MAX_TEXT_CHARS": "2000",
        "LSTM_SERVE_MAX_BODY_BYTES": "20000",
        "LSTM_SERVE_MAX_WS_MESSAGE_BYTES": "5000",
        "LSTM_SERVE_MAX_TOKENS": "200",
    }
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(env, log) as process:
        yield process


@pytest.fixture
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
