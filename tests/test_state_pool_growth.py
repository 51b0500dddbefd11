"""The state pool grows without losing a state, and into tensors made ahead on a helper
thread when it nears full (``SpareTensors``), so the inference thread only copies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from service.engine.spare_tensors import SpareTensors
from service.engine.state_pool import SPARE_AT, StatePool

CPU = torch.device("cpu")


def _fill(pool: StatePool, count: int) -> list[int]:
    slots = [pool.allocate() for _ in range(count)]
    pool.ensure_capacity()
    for slot in slots:
        pool.write(slot, torch.full((2, 3), float(slot)), torch.full((2, 3), -float(slot)))
    return slots


def _wait_for_spare(pool: StatePool, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool._spares is not None and pool._spares._ready is None:
        assert time.monotonic() < deadline, "the spare tensors were never made"
        time.sleep(0.01)


def test_growth_keeps_every_state_and_uses_the_spare() -> None:
    pool = StatePool(2, 3, 100, torch.device("cpu"))
    slots = _fill(pool, int(SPARE_AT * 100))  # the spare is asked for at 90 %
    _wait_for_spare(pool)
    assert pool._spares is not None
    spare = pool._spares._ready
    assert spare is not None and spare[0].shape == (2, 150, 3)  # the next growth's size
    more = [pool.allocate() for _ in range(11)]  # past 100: reserved grows to 150
    pool.ensure_capacity()
    assert pool.h is spare[0] and pool.c is spare[1]  # grown into the spare, no new tensors
    assert pool.capacity == 150 and len(pool.log_norm) == 150
    for slot in slots:
        h, c = pool.read(slot)
        assert torch.equal(h, torch.full((2, 3), float(slot)))
        assert torch.equal(c, torch.full((2, 3), -float(slot)))
    for slot in more:  # new slots start from zeros
        h, c = pool.read(slot)
        assert not h.any() and not c.any()


def test_growth_without_a_spare_still_keeps_states() -> None:
    pool = StatePool(2, 3, 4, torch.device("cpu"), growth=2.0)
    pool._spares = None  # as on a GPU: no helper thread
    slots = _fill(pool, 4)
    extra = _fill(pool, 5)  # grows 4 -> 8 -> 16 in one ensure_capacity
    assert pool.capacity == 16 and len(pool.log_norm) == 16
    for slot in slots + extra:
        h, _ = pool.read(slot)
        assert torch.equal(h, torch.full((2, 3), float(slot)))


def test_a_reserved_pool_grows_in_place_without_a_copy() -> None:
    pool = StatePool(2, 3, 4, CPU, growth=2.0)
    slots = _fill(pool, 2)  # states from before the reservation move into it
    assert pool.reserve(64)
    storage = pool.h.untyped_storage().data_ptr()
    extra = _fill(pool, 22)  # 4 -> 8 -> 16 -> 32, each inside the reservation
    assert pool.capacity == 32 and len(pool.log_norm) == 32
    assert pool.h.untyped_storage().data_ptr() == storage  # the same memory: nothing copied
    assert pool._spares is not None and pool._spares._size == 0  # no spare asked for
    for slot in slots + extra:
        h, c = pool.read(slot)
        assert torch.equal(h, torch.full((2, 3), float(slot)))
        assert torch.equal(c, torch.full((2, 3), -float(slot)))
    fresh = [pool.allocate() for _ in range(8)]
    pool.ensure_capacity()
    assert all(not pool.read(slot)[0].any() for slot in fresh)  # untouched pages read zero
    gathered_h, _ = pool.gather(torch.tensor(slots))
    assert torch.equal(gathered_h[0, :, 0], torch.tensor([float(s) for s in slots]))


def test_past_its_reservation_a_pool_grows_into_new_tensors() -> None:
    pool = StatePool(2, 3, 4, CPU, growth=2.0)
    assert pool.reserve(8)
    slots = _fill(pool, 12)  # 4 -> 8 in place, then 16: past the room
    assert pool.capacity == 16 and pool._room_slots == 0 and pool.h.is_contiguous()
    for slot in slots:
        assert torch.equal(pool.read(slot)[0], torch.full((2, 3), float(slot)))


def test_a_refused_reservation_leaves_the_pool_growing_as_before() -> None:
    pool = StatePool(2, 3, 4, CPU, growth=2.0)
    assert not pool.reserve(1 << 58)  # more address space than the machine has: refused
    assert pool._room_slots == 0
    slots = _fill(pool, 9)
    assert pool.capacity == 16 and pool.h.shape == (2, 16, 3)
    assert torch.equal(pool.read(slots[-1])[0], torch.full((2, 3), float(slots[-1])))


def test_copy_now_reads_and_writes_a_reserved_pool() -> None:
    pool = StatePool(2, 3, 4, CPU)
    assert pool.reserve(1000)
    [source] = _fill(pool, 1)
    target = pool.allocate()
    pool.ensure_capacity()
    pool.copy_now(source, target)
    assert torch.equal(pool.read(target)[0], pool.read(source)[0])


def test_reserved_zeros_is_lazy_and_zero() -> None:
    from service.engine.reserved_memory import reserved_zeros

    big = reserved_zeros((2, 1 << 30), torch.float32)  # 8 GiB of address space
    assert big is not None and big.shape == (2, 1 << 30)
    assert big[1, -5:].sum().item() == 0.0  # reading touches one page, not 8 GiB
    assert reserved_zeros((0, 4), torch.float32) is not None


def test_a_spare_too_small_is_dropped() -> None:
    spares = SpareTensors()
    spares.request(lambda n: (torch.zeros(1, n, 1), torch.zeros(1, n, 1)), 10)
    deadline = time.monotonic() + 10
    while spares._ready is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert spares.take(11) is None  # too small: dropped, the caller grows itself
    assert spares._ready is None and spares.take(5) is None


def test_a_bigger_request_overtakes_a_smaller_one() -> None:
    spares = SpareTensors()
    made: list[int] = []

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        made.append(n)
        return torch.zeros(1, n, 1), torch.zeros(1, n, 1)

    spares.request(make, 10)
    spares.request(make, 10)  # the same size again: nothing new
    spares.request(make, 20)
    deadline = time.monotonic() + 10
    while (spares._ready is None or spares._ready[0].shape[1] != 20) or len(made) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sorted(made) == [10, 20]
    pair = spares.take(15)
    assert pair is not None and pair[0].shape[1] == 20


def test_session_caches_grow_into_the_spare_too() -> None:
    from models.continuous_cache import CacheParams
    from service.engine.session_cache import CachePool

    pool = CachePool(
        CacheParams(theta=1.0, lam=0.3, window=8),
        hidden=4,
        history=2,
        max_bytes=1 << 30,
        device=CPU,
    )
    slots = [pool.allocate() for _ in range(int(SPARE_AT * 16))]  # capacity 16 at the start
    pool.ensure_capacity()
    for slot in slots:
        pool.keys[slot] = float(slot)
        pool.words[slot] = slot
    deadline = time.monotonic() + 10
    while pool._spares is not None and pool._spares._ready is None:
        assert time.monotonic() < deadline, "the spare tensors were never made"
        time.sleep(0.01)
    assert pool._spares is not None
    spare = pool._spares._ready
    assert spare is not None
    more = [pool.allocate() for _ in range(17 - len(slots))]  # past 16: grows to 24
    pool.ensure_capacity()
    assert pool.keys is spare[0] and pool.keys.shape[0] == 24 and len(pool.counts) == 24
    for slot in slots:
        assert bool((pool.keys[slot] == float(slot)).all()) and bool(
            (pool.words[slot] == slot).all()
        )
    assert not pool.keys[more].any() and not pool.last_weights[more].any()


def test_take_waits_for_a_set_still_being_made() -> None:
    spares = SpareTensors()
    made: list[int] = []

    def slow(n: int) -> tuple[torch.Tensor, ...]:
        time.sleep(0.3)
        made.append(n)
        return (torch.zeros(n),)

    spares.request(slow, 10)
    tensors = spares.take(8)  # under way and big enough: waited for, not made again
    assert tensors is not None and tensors[0].shape == (10,) and made == [10]
    spares.request(slow, 20)
    assert spares.take(30) is None  # under way but too small: not waited for


def test_pool_growth_bench_runs(tmp_path: Path) -> None:
    from bench.micro.pool_growth import main

    result = main(
        [
            "--up-to",
            "3000",
            "--cache-up-to",
            "5000",
            "--head-start-s",
            "0.05",
            "--json",
            str(tmp_path / "growth.json"),
        ]
    )
    assert [s for s, _ in result["pool_made_ahead"]] == [1536, 2304, 3456]
    assert [s for s, _ in result["pool_on_the_spot"]] == [1536, 2304, 3456]
    assert [s for s, _ in result["pool_reserved"]] == [1536, 2304, 3456]
    assert [s for s, _ in result["caches_made_ahead"]] == [6144]
    assert json.loads((tmp_path / "growth.json").read_text())["model"].endswith("default")
