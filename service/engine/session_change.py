"""A session's state change as the event loop sees it, in order: what a save stores.

Kept apart from ``service.engine.durable`` (which makes changes durable) because every
feed, fork and rewind records one, with or without a session store.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine.history import StoredHistory
from service.engine.sessions import Session


@dataclass(frozen=True)
class Change:
    """A state change seen on the event loop, in order: what to store with its bytes."""

    version: int
    position: int
    epoch: int
    history: StoredHistory | None = None  # the rewind history to store with the state


def changed(session: Session, history: StoredHistory | None = None) -> Change:
    """Call on the event loop right when the worker reports a new state."""
    session.version += 1
    return Change(session.version, session.position, session.epoch, history)
