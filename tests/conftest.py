"""Shared fixtures: tiny random checkpoints (PTB vocabulary) built once per test run.

The tests run in a bare clone: the tiny models need only the PTB vocabulary, which the
bundled checkpoint's config ships. Tests that read the PTB text itself take the ``ptb_dir``
fixture (and so carry the ``needs_data`` marker): they skip, with the reason, when
``../shared/data/ptb`` is absent, except where ``LSTM_SERVE_REQUIRE_DATA=1`` (CI) makes
that a failure, so CI cannot silently run fewer tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models.checkpoint import Checkpoint, read_config, save
from models.config import ModelConfig
from models.network import LanguageModel
from models.normalizer import Normalizer
from models.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data"
PTB_DIR = DATA_DIR / "ptb"
BUNDLED_MODEL_DIR = ROOT / "models" / "default"
REQUIRE_DATA_ENV = "LSTM_SERVE_REQUIRE_DATA"
# Test servers run one API process unless a test asks for more (tests/test_processes.py
# does): the suite starts dozens of servers on a 2-CPU CI machine. The product default
# (two on two CPUs) runs in `make smoke-docker` and the benchmarks.
os.environ.setdefault("LSTM_SERVE_API_WORKERS", "1")
NEEDS_DATA = "needs_data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the PTB text, so ``-m "not needs_data"`` selects the rest.

    Derived from the fixture closure rather than written by hand, so a test cannot read
    the data without carrying the marker.
    """
    for item in items:
        if "ptb_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(NEEDS_DATA)


def make_checkpoint(
    directory: Path,
    vocabulary: Vocabulary,
    *,
    hidden: int = 16,
    layers: int = 2,
    seed: int = 0,
    model_id: str = "tiny-test",
    card: dict[str, object] | None = None,
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
        Checkpoint(
            model,
            vocabulary,
            Normalizer("ptb"),
            model_id,
            {"data": {"name": "random"}, **(card or {})},
        ),
        directory,
    )
    return directory


@pytest.fixture(scope="session")
def ptb_dir() -> Path:
    """The PTB text directory; the one way a test reaches the data outside the repository."""
    if not PTB_DIR.is_dir():
        reason = f"needs the PTB text at {PTB_DIR} (see README)"
        if os.environ.get(REQUIRE_DATA_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV}=1 makes it required", pytrace=False)
        pytest.skip(reason)
    return PTB_DIR


@pytest.fixture(scope="session")
def ptb_vocabulary() -> Vocabulary:
    """The PTB vocabulary as the bundled checkpoint ships it (equal to PTB train's: a test
    in tests/test_vocabulary.py checks that where the data is present)."""
    return Vocabulary(read_config(BUNDLED_MODEL_DIR)["vocabulary"])


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
