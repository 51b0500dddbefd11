"""The ``WS /v1/stream`` protocol without I/O, shared by ``Stream`` and ``AsyncStream``.

Every client message carries an ``id`` that the server echoes in its answers, so an
answer that belongs to an earlier message (the rest of a cancelled generation) is
recognised and skipped while the session's ``position`` still follows it.
"""

from __future__ import annotations

import json
from typing import Any

from lstm_serve.client.errors import error_from_payload
from lstm_serve.client.results import SessionStep, StreamDone, StreamToken


class StreamProtocol:
    """State of one stream: its session, position, and the ids of its messages."""

    def __init__(self) -> None:
        self.session_id = ""
        self.position = 0
        self.model = ""
        self._last_id = 0

    def message(self, kind: str, **fields: Any) -> tuple[int, str]:
        """A client message of type ``kind`` and its id."""
        self._last_id += 1
        return self._last_id, json.dumps({"type": kind, "id": self._last_id, **fields})

    def ready(self, raw: str) -> None:
        """The server's first message: ``ready``, or an error (the stream did not open)."""
        data = json.loads(raw)
        if data.get("type") == "error":
            raise error_from_payload(data)
        self._on_ready(data)

    def answer(self, raw: str, message_id: int) -> dict[str, Any] | None:
        """The message ``raw`` if it answers ``message_id``; None for a stale one.

        Raises:
            APIError: the subclass of the error's code, for an error answer (one without
                an id too: the server cannot always read the id of a bad message).
        """
        data = json.loads(raw)
        kind = data.get("type")
        answer_id = data.get("id")
        if kind in ("token", "done") and "position" in data:
            self.position = int(data["position"])
        if answer_id is not None and answer_id != message_id:
            return None
        if kind == "error":
            raise error_from_payload(data)
        if kind == "ready":
            self._on_ready(data)
        elif kind == "predictions":
            self.position = int(data["position"])
        return data

    def step(self, data: dict[str, Any]) -> SessionStep:
        return SessionStep.from_json(data, self.session_id)

    @staticmethod
    def token(data: dict[str, Any]) -> StreamToken:
        return StreamToken(str(data["word"]), int(data["position"]))

    def done(self, data: dict[str, Any], words: list[str]) -> StreamDone:
        return StreamDone(
            str(data["finish_reason"]), str(data.get("text", "")), self.position, words
        )

    def _on_ready(self, data: dict[str, Any]) -> None:
        self.session_id = str(data["session_id"])
        self.position = int(data.get("position", 0))
        self.model = str(data.get("model", self.model))
