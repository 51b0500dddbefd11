"""``LoopSocket``: a ZeroMQ socket read from the event loop's reader callback.

A real ROUTER and DEALER over ``ipc://``, as the engine and an API process use them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import zmq

from service.engine.loop_socket import DRAIN_BATCH, LoopSocket


async def _echo_pair(
    address: str,
) -> tuple[LoopSocket, LoopSocket, list[bytes], asyncio.Event, list[int]]:
    """A ROUTER that answers each message (upper-cased; ``b"boom"`` raises) and a
    DEALER that collects the answers; ``expected[0]`` is how many answers set ``done``."""
    replies: list[bytes] = []
    done = asyncio.Event()
    expected = [0]

    def answer(frames: list[bytes]) -> None:
        identity, payload = frames
        if payload == b"boom":
            raise ValueError("a handler that fails")
        router.send([identity, payload.upper()])

    def collect(frames: list[bytes]) -> None:
        replies.append(bytes(frames[0]))
        if len(replies) >= expected[0]:
            done.set()

    router = LoopSocket(zmq.ROUTER, answer)
    router.socket.bind(address)
    router.start()
    dealer = LoopSocket(zmq.DEALER, collect)
    dealer.socket.connect(address)
    dealer.start()
    return router, dealer, replies, done, expected


async def _answers(address: str, payloads: list[bytes], count: int) -> list[bytes]:
    """Send every payload before the loop runs either reader; the first ``count``
    answers."""
    router, dealer, replies, done, expected = await _echo_pair(address)
    expected[0] = count
    for payload in payloads:
        dealer.send([payload])
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        router.close()
        dealer.close()
    return replies


def test_every_message_is_answered_in_order_beyond_one_drain_batch(tmp_path: Path) -> None:
    """More messages than one callback reads: the rest are read on the next turns, and
    the answers sent meanwhile do not swallow the readiness edge."""

    async def main() -> list[bytes]:
        payloads = [f"m{i}".encode() for i in range(3 * DRAIN_BATCH + 5)]
        return await _answers(f"ipc://{tmp_path}/a", payloads, len(payloads))

    replies = asyncio.run(main())
    assert replies == [f"M{i}".encode() for i in range(3 * DRAIN_BATCH + 5)]


def test_a_failing_handler_does_not_stop_the_reading(tmp_path: Path) -> None:
    async def main() -> list[bytes]:
        return await _answers(f"ipc://{tmp_path}/b", [b"one", b"boom", b"two"], 2)

    assert asyncio.run(main()) == [b"ONE", b"TWO"]


def test_after_stop_reading_nothing_is_handled_but_sends_still_go(tmp_path: Path) -> None:
    """The engine stops reading on SIGTERM and then sends its last replies."""

    async def main() -> tuple[list[bytes], list[bytes]]:
        router, dealer, replies, done, expected = await _echo_pair(f"ipc://{tmp_path}/c")
        expected[0] = 1
        dealer.send([b"first"])
        await asyncio.wait_for(done.wait(), 20)
        router.stop_reading()
        dealer.send([b"unread"])
        # The handler no longer runs: the message is still in the socket, read here.
        identity, payload = await asyncio.to_thread(router.socket.recv_multipart)
        done.clear()
        expected[0] = 2
        router.send([identity, b"late"])
        await asyncio.wait_for(done.wait(), 20)
        router.close()
        dealer.close()
        return replies, [bytes(payload)]

    replies, unread = asyncio.run(main())
    assert replies == [b"FIRST", b"late"]
    assert unread == [b"unread"]
