"""A checkpoint of every cell type loads and serves through the real API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from models.config import CELL_TYPES
from models.vocabulary import Vocabulary
from tests.conftest import make_checkpoint
from tests.serverproc import running_server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_cell_serves_through_the_api(cell: str, ptb_vocabulary: Vocabulary, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / cell, ptb_vocabulary, cell=cell, model_id=cell)
    with running_server(
        {"LSTM_SERVE_MODEL_PATH": str(checkpoint)}, tmp_path / "server.log"
    ) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        card = http.get("/v1/models").json()
        assert card["cell"] == cell and card["architecture"] == cell
        text = "the company said it expects"
        whole = http.post("/v1/score", json={"text": text}).json()
        sid = http.post("/v1/sessions", json={}).json()["session_id"]
        total = sum(
            http.post(f"/v1/sessions/{sid}/feed", json={"text": w}).json()["logprob"]
            for w in text.split()
        )
        assert abs(total - whole["logprob"]) < 1e-4
        generated = http.post(
            "/v1/generate", json={"text": "the", "max_tokens": 5, "seed": 1, "stop_at_eos": False}
        ).json()
        assert len(generated["tokens"]) == 5
        with connect(f"{server.ws_url}/v1/stream?session_id={sid}") as ws:
            assert json.loads(ws.recv(timeout=10))["position"] == 5
            ws.send(json.dumps({"type": "feed", "text": "sales"}))
            assert json.loads(ws.recv(timeout=10))["position"] == 6


def test_stream_under_the_sansio_websocket_implementation(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """``LSTM_SERVE_WS_PROTOCOL`` picks uvicorn's implementation; the protocol is the same."""
    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_WS_PROTOCOL": "websockets-sansio",
    }
    with (
        running_server(env, tmp_path / "server.log") as server,
        connect(f"{server.ws_url}/v1/stream") as ws,
    ):
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready" and ready["position"] == 0
        ws.send(json.dumps({"type": "feed", "text": "the market", "id": 7}))
        answer = json.loads(ws.recv(timeout=10))
        assert (answer["type"], answer["position"], answer["id"]) == ("predictions", 2, 7)
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["code"] == "invalid_request"
