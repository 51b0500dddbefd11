"""Signed, portable session states: ``GET /v1/sessions/{id}/state`` and back.

A token is base64url (no padding) of ``header + h + c [+ cache] + HMAC-SHA256(key, all
before)``; the header holds a format tag, the model's weights sha256, the position and the
state's shape, and the state is float32 ``[layers, hidden]`` then ``[layers, cell]``. A
session with a continuous cache gets the tag ``LSS2`` and its cache's bytes after the state
(``service.engine.session_cache``), so the import carries what it remembered. The HMAC is
checked first, so a tampered, truncated or foreign-key token is refused (422) before any
field is trusted; a genuine token of another model is ``session_incompatible`` (409).
Nothing is unpickled: the payload is fixed-layout bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
from array import array
from dataclasses import dataclass

from service.engine.errors import InvalidRequest, SessionIncompatible
from service.engine.session_cache import parse

TAG = b"LSS1"
TAG_CACHED = b"LSS2"  # followed by the continuous cache
HEADER = struct.Struct("<4s32sQIII")  # tag, weights sha256, position, layers, hidden, cell
MAC_BYTES = 32


@dataclass(frozen=True)
class ModelShape:
    """What a token must match to be imported here."""

    weights_sha256: str  # hex
    layers: int
    hidden: int
    cell: int  # 0 for cells without a c state (rnn, gru)


@dataclass(frozen=True)
class StateToken:
    position: int
    h: bytes  # float32 [layers, hidden]
    c: bytes  # float32 [layers, cell]
    cache: bytes = b""  # the continuous cache's bytes (empty: none)


def encode(key: bytes, shape: ModelShape, token: StateToken) -> str:
    header = HEADER.pack(
        TAG_CACHED if token.cache else TAG,
        bytes.fromhex(shape.weights_sha256),
        token.position,
        shape.layers,
        shape.hidden,
        shape.cell,
    )
    payload = header + token.h + token.c + token.cache
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode(key: bytes, shape: ModelShape, text: str) -> StateToken:
    """The state inside ``text``; raises ``InvalidRequest`` or ``SessionIncompatible``."""
    raw = _unbase64(text)
    if len(raw) < HEADER.size + MAC_BYTES:
        raise InvalidRequest("state token truncated: shorter than its header")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise InvalidRequest(
            "state token signature does not match: it was altered or truncated, or signed "
            "with another server key (LSTM_SERVE_STATE_KEY)"
        )
    tag, sha, position, layers, hidden, cell = HEADER.unpack_from(payload)
    if tag not in (TAG, TAG_CACHED):
        raise InvalidRequest(f"unknown state token format {tag!r}")
    if sha.hex() != shape.weights_sha256 or (layers, hidden, cell) != (
        shape.layers,
        shape.hidden,
        shape.cell,
    ):
        raise SessionIncompatible(
            f"state token was made by another model (weights sha256 {sha.hex()[:12]}…, "
            f"state [{layers}, {hidden}, {cell}]); this server runs "
            f"{shape.weights_sha256[:12]}…"
        )
    h_bytes, c_bytes = 4 * layers * hidden, 4 * layers * cell
    body = payload[HEADER.size :]
    state_bytes = h_bytes + c_bytes
    if len(body) != state_bytes if tag == TAG else len(body) <= state_bytes:
        raise InvalidRequest("state token has the wrong size for its state shape")
    values = array("f", body[:state_bytes])
    if not all(math.isfinite(v) for v in values):
        raise InvalidRequest("state token holds non-finite values (NaN or infinity)")
    cache = body[state_bytes:]
    if cache:
        try:
            parse(cache, hidden)
        except ValueError as error:
            raise InvalidRequest(f"state token's cache is not valid: {error}") from None
    return StateToken(position, body[:h_bytes], body[h_bytes:state_bytes], cache)


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("state token is not base64url text") from None
