"""Readiness follows the session store: a frozen or dead store turns it false.

A store that cannot answer a ping within a second makes ``/readyz`` 503, so a load balancer
stops sending work that would only wait for it (a frozen Redis replays its socket later).
"""

from __future__ import annotations

import asyncio
import logging

from service.engine.errors import NotReady
from service.engine.store import SessionStore, StoreUnavailable

log = logging.getLogger(__name__)
STORE_CHECK_INTERVAL_S = 1.0


class StoreWatch:
    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.healthy = True

    async def run(self) -> None:
        """Ping the store every ``STORE_CHECK_INTERVAL_S`` until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self.store.ping(), STORE_CHECK_INTERVAL_S)
                healthy = True
            except (StoreUnavailable, TimeoutError, NotReady):
                healthy = False
            if healthy != self.healthy:
                log.warning("session store %s", "back" if healthy else "unavailable")
            self.healthy = healthy
            await asyncio.sleep(STORE_CHECK_INTERVAL_S)
