"""The OpenAPI ``info.description`` (Markdown): what the schema cannot say by itself.

OpenAPI describes HTTP routes only, so the WebSocket protocol of ``/v1/stream`` is written
out here, with the error table and the text rules; ``create_app`` passes it to
``FastAPI(description=...)``. It restates docs/API.md, the contract.
"""

from __future__ import annotations

OPENAPI_DESCRIPTION = """\
Serving of word-level recurrent (LSTM) language models: next-word **predictions**,
**scores** (log-probabilities, perplexity), **generation** (JSON or Server-Sent Events),
and **sessions** that keep a conversation's recurrent state `(h, c)` on the server, so that
a client sends only its new words — over HTTP, or live over the WebSocket `/v1/stream`
described below. Try it in the [playground](/); the contract is `docs/API.md` in the
repository, and `lstm_serve.client` is a Python client.

## Text and tokens
The model works on words. Text is normalised by the model's own rules (for the Penn
Treebank model: lower case, `it's` → `it 's`, digits → `N`, unknown words → `<unk>`, a line
break → `<eos>`); the model's tokens written literally (`<unk>`, `<eos>`, `N`) stay those
tokens. Every answer that consumed text returns the `tokens` it actually fed
(`prompt_tokens` for generation). An empty text is valid: the model then predicts the first
word of a sentence. Predictions are sorted by probability over the full vocabulary;
`exclude_special` leaves `<unk>` and `<eos>` out. Generation never emits `<unk>`;
`temperature: 0` is greedy, and the same `seed` gives the same words whatever else the
server is doing.

## Authentication
When the server is started with `LSTM_SERVE_API_KEYS`, every `/v1` route needs
`Authorization: Bearer KEY` (a browser's WebSocket may pass `?access_token=KEY` instead),
and a session is visible only to the key that created it. `/healthz`, `/readyz` and
`/metrics` stay open.

## Errors
Every error has one shape:
`{"error": {"code": "session_not_found", "message": "no session 'x1'", "details": null}}`

| code | HTTP | when |
| --- | --- | --- |
| `invalid_request` | 422 | a field is missing, of the wrong type or out of range; malformed JSON |
| `unauthorized` | 401 | auth is on and the bearer key is missing or wrong |
| `session_not_found` | 404 | unknown, expired, deleted, or owned by another key |
| `session_busy` | 409 | a second live stream tries to attach to a session |
| `session_incompatible` | 409 | the session's stored state was made by a different model |
| `payload_too_large` | 413 | text, body or WebSocket message over the configured limit |
| `overloaded` | 429 | queue or session capacity full; retry after the `Retry-After` header |
| `not_ready` | 503 | model not loaded yet, or the server is draining |
| `timeout` | 504 | the request waited longer than its deadline |

## Sessions
`POST /v1/sessions` creates one (optionally fed a prefix); `POST /v1/sessions/{id}/feed`
feeds new words and answers their summed `logprob` and the next-word predictions; feeds to
one session apply strictly in arrival order, and feeding `"a b c"` once equals feeding
`"a"`, `"b"`, `"c"` one by one. `position` counts the tokens a session has consumed. A
session lives until deleted or idle for its TTL (`LSTM_SERVE_SESSION_TTL_S`).

## Streaming: WS /v1/stream
Connect to `/v1/stream` for a new session, or `/v1/stream?session_id=ID` to attach to an
existing one (to resume after a disconnect). At most one live stream per session. The
server's first message is
`{"type": "ready", "session_id": "...", "position": 0, "model": "..."}`.
A stream that cannot open (`session_not_found`, `session_busy`, `unauthorized`,
`overloaded`, `not_ready`) gets one `{"type": "error", "code", "message"}` message and is
closed with code 1008.

Then text frames of JSON, one message each. Any client message may carry an `"id"`
(string or integer) that the server echoes in every answer to it:

| client sends | server answers |
| --- | --- |
| `{"type": "feed", "text", "k"}` | `{"type": "predictions", "position", "tokens", "logprob", \
"predictions"}` |
| `{"type": "generate", "max_tokens", ...}` | `{"type": "token", "word", "position"}` per \
word, then `{"type": "done", "finish_reason", "text"}` |
| `{"type": "cancel"}` | stops a running generation: its `done` says `"cancelled"` |
| `{"type": "reset"}` | `{"type": "ready", ..., "position": 0}` |
| `{"type": "close"}` | no answer: the session is deleted and the socket closed with code 1000 |

A feed may also carry `exclude_special`. A generate takes the fields of `POST /v1/generate`
(`max_tokens` 20, `temperature` 1.0, `top_k` 0, `top_p` 1.0, `seed` null, `stop_at_eos`
true by default); its `done` carries `finish_reason` (`length`, `eos` or `cancelled`) and
the generated `text`. Generated words, a final `<eos>`
included, become part of the session's history and count in its `position`. Messages are
answered in the order they arrive; those sent during a generation wait until it ends
(`cancel` excepted). A bad message (not JSON, unknown type, bad field, too large) gets
`{"type": "error", "code", "message"}` and the connection stays open. A disconnect without
`close` keeps the session until its TTL. On shutdown, streams are closed with code 1012:
reconnect with the `session_id` to resume.

Example:
```
→ {"type": "feed", "text": "the company said", "k": 2, "id": 1}
← {"type": "predictions", "position": 3, "tokens": ["the", "company", "said"],
   "logprob": -17.2, "predictions": [{"word": "it", "probability": 0.21, "logprob": -1.56},
   {"word": "the", "probability": 0.09, "logprob": -2.41}], "id": 1}
→ {"type": "generate", "max_tokens": 2, "temperature": 0, "id": 2}
← {"type": "token", "word": "it", "position": 4, "id": 2}
← {"type": "token", "word": "expects", "position": 5, "id": 2}
← {"type": "done", "finish_reason": "length", "text": "it expects", "id": 2}
```

## Operations
`GET /healthz` (liveness), `GET /readyz` (200 once the model is loaded and the worker
runs; 503 with a reason before that or while draining), `GET /metrics` (Prometheus text),
`GET /v1/models` (the served model's card).
"""
