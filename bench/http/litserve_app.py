"""The peer baseline: LitServe with batching on, serving the same checkpoint's predict.

    .venv/bin/python -m bench.http.litserve_app --port 8002 [--model models/default]
    LSTM_SERVE_BENCH_PATH=/predict wrk -t2 -c64 -d15s -s bench/http/wrk_bodies.lua \
        http://127.0.0.1:8002

Issue 13 measures lstm-serve against what a well-known batching server does with the same
model: ``max_batch_size=64``, ``batch_timeout=5 ms``, one inference worker with one torch
thread (as lstm-serve's engine has on 2 CPUs). Text is tokenised the way lstm-serve's API
does (the checkpoint's normalizer and vocabulary), and each batch is one padded forward
(``bench.http.padded``). Needs ``pip install litserve`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import litserve as ls
import torch

from bench.http.padded import padded_top_k
from models.checkpoint import Checkpoint, load
from models.tokenizer import Tokenizer

MAX_BATCH_SIZE = 64
BATCH_TIMEOUT_S = 0.005


class PredictAPI(ls.LitAPI):
    """``POST /predict`` ``{"text": ..., "k": ...}`` -> the top ``k`` next words."""

    def __init__(self, model_path: Path, threads: int) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
        self.model_path = model_path
        self.threads = threads
        self.checkpoint: Checkpoint | None = None
        self.tokenizer: Tokenizer | None = None

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        self.checkpoint = load(self.model_path, device)
        self.checkpoint.model.eval()
        self.checkpoint.model.prepare_for_serving()  # the decoder kernel lstm-serve picks
        self.tokenizer = Tokenizer(self.checkpoint.normalizer, self.checkpoint.vocabulary)

    def decode_request(self, request) -> tuple[list[int], int]:
        # Unannotated on purpose: LitServe turns an annotation into the body's type, and
        # with none it reads the JSON body itself (the cheapest path, as lstm-serve's).
        assert self.tokenizer is not None
        _, ids = self.tokenizer.encode(str(request["text"]))
        return ids, int(request.get("k", 5))

    def predict(self, batch: list[tuple[list[int], int]]) -> list[tuple[list[Any], int]]:
        assert self.checkpoint is not None
        k = max(k for _, k in batch)
        eos = self.checkpoint.vocabulary.eos_id
        tops = padded_top_k(self.checkpoint.model, eos, [ids for ids, _ in batch], k)
        return [(top[:k_row], k_row) for top, (_, k_row) in zip(tops, batch, strict=True)]

    def encode_response(self, output: tuple[list[Any], int]) -> dict[str, Any]:
        assert self.checkpoint is not None
        word = self.checkpoint.vocabulary.word
        return {"predictions": [{"word": word(i), "logprob": lp} for i, lp in output[0]]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    args = parser.parse_args(argv)
    api = PredictAPI(args.model.resolve(), args.threads)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    # No access log (lstm-serve writes none either): a line per request costs CPU.
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
