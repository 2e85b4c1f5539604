"""Throttling: token buckets, chains of limits and the registry, on trio's MockClock."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from trio_ftp.throttle import Throttle, ThrottleRegistry, TokenBucket

MB = 1_000_000
BLOCK = 64 * 1024
#: Every test finishes within this much trio time (autojumped) or fails instead of hanging.
GUARD = 1_000
#: More bytes than any throttled test moves; past it a share test fails instead of spinning.
RUNAWAY = 1_000 * MB


@dataclass(eq=False)
class Limited:
    """Stands for a Server or a User: the four speed-limit attributes."""

    read_speed_limit: float | None = None
    write_speed_limit: float | None = None
    read_speed_limit_per_connection: float | None = None
    write_speed_limit_per_connection: float | None = None


async def move(limiter: TokenBucket | Throttle, total: int, block: int = BLOCK) -> float:
    """Acquire ``total`` bytes in blocks; return the trio time it took."""
    start = trio.current_time()
    left = total
    while left:
        size = min(block, left)
        await limiter.acquire(size)
        left -= size
    return trio.current_time() - start


async def shares(limiters: list[TokenBucket | Throttle], seconds: float) -> list[int]:
    """Run one block-mover per limiter for ``seconds`` of trio time; bytes each moved."""
    moved = [0] * len(limiters)

    async def run(index: int) -> None:
        while True:
            await limiters[index].acquire(BLOCK)
            moved[index] += BLOCK
            # an unthrottled limiter never lets trio time pass: fail instead of spinning
            assert moved[index] <= RUNAWAY, "limiter does not throttle"

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for index in range(len(limiters)):
                nursery.start_soon(run, index)
    return moved


def assert_equal_shares(moved: list[int], tolerance: float) -> None:
    """Every share is within ``tolerance`` of the mean."""
    mean = sum(moved) / len(moved)
    for share in moved:
        assert share == pytest.approx(mean, rel=tolerance), moved


async def test_one_bucket_paces_to_its_rate(autojump_clock):
    """10 MB through a 1 MB/s bucket in 64 KiB blocks takes 10 s (within 1%)."""
    bucket = TokenBucket(1 * MB, burst=BLOCK)
    with trio.fail_after(GUARD):
        elapsed = await move(bucket, 10 * MB)
    assert elapsed == pytest.approx(10, rel=0.01)


async def test_unlimited_bucket_takes_no_time(autojump_clock):
    """An unlimited bucket (and an empty Throttle) never sleeps and takes no trio time."""
    bucket = TokenBucket(None, burst=BLOCK)
    with trio.fail_after(GUARD):
        assert await move(bucket, 10 * MB) == 0
        assert await move(Throttle(), 10 * MB) == 0
        assert await move(Throttle(bucket, TokenBucket(None, burst=1)), 10 * MB) == 0
    assert bucket.sleeps == 0


@pytest.mark.parametrize("tasks", [2, 3])
async def test_tasks_sharing_a_bucket_get_equal_shares(autojump_clock, tasks):
    """Tasks sharing one 1 MB/s bucket each get 1/n of it (within 5%) over 10 s."""
    bucket = TokenBucket(1 * MB, burst=BLOCK)
    with trio.fail_after(GUARD):
        moved = await shares([bucket] * tasks, 10)
    assert_equal_shares(moved, 0.05)
    assert sum(moved) == pytest.approx(10 * MB, rel=0.02)


async def test_tightest_limit_of_a_throttle_wins(autojump_clock):
    """A Throttle of (connection 1 MB/s, server 2 MB/s) runs at 1 MB/s, in either order."""
    with trio.fail_after(GUARD):
        connection = TokenBucket(1 * MB, burst=BLOCK)
        server = TokenBucket(2 * MB, burst=BLOCK)
        assert await move(Throttle(connection, server), 10 * MB) == pytest.approx(10, rel=0.01)
        connection = TokenBucket(1 * MB, burst=BLOCK)
        server = TokenBucket(2 * MB, burst=BLOCK)
        assert await move(Throttle(server, connection), 10 * MB) == pytest.approx(10, rel=0.01)


async def test_two_connections_share_the_server_limit(autojump_clock):
    """Connections at 1.5 MB/s each under a shared 2 MB/s server get ~1 MB/s each."""
    server = TokenBucket(2 * MB, burst=BLOCK)
    throttles: list[TokenBucket | Throttle] = [
        Throttle(TokenBucket(1.5 * MB, burst=BLOCK), server) for _ in range(2)
    ]
    with trio.fail_after(GUARD):
        moved = await shares(throttles, 10)
    assert_equal_shares(moved, 0.05)
    assert sum(moved) == pytest.approx(20 * MB, rel=0.02)


async def test_raising_the_rate_applies_to_a_running_transfer(autojump_clock):
    """Raised from 100 kB/s to 10 MB/s after 1 s, the rest of 10 MB takes about 1 s."""
    bucket = TokenBucket(100_000, burst=BLOCK)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(move, bucket, 10 * MB)
            await trio.sleep(1)
            start = trio.current_time()
            bucket.rate = 10 * MB
        assert trio.current_time() - start == pytest.approx(0.99, abs=0.05)


async def test_raising_the_rate_wakes_a_long_wait_at_once(autojump_clock):
    """A waiter owing 6.5 s at 10 kB/s returns at once when the rate becomes 10 MB/s."""
    bucket = TokenBucket(10_000, burst=BLOCK)
    with trio.fail_after(GUARD):
        await bucket.acquire(BLOCK)  # the saved-up burst
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bucket.acquire, BLOCK)
            await trio.sleep(0.1)
            start = trio.current_time()
            bucket.rate = 10 * MB
        assert trio.current_time() - start < 0.01


async def test_lowering_the_rate_applies_to_a_running_transfer(autojump_clock):
    """Lowered from 10 MB/s to 1 MB/s after 0.5 s, 10 MB take ~0.5 s + 5 s."""
    bucket = TokenBucket(10 * MB, burst=BLOCK)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(move, bucket, 10 * MB)
            start = trio.current_time()
            await trio.sleep(0.5)
            bucket.rate = 1 * MB
        assert trio.current_time() - start == pytest.approx(5.5, rel=0.02)


async def test_limit_becoming_unlimited_and_back(autojump_clock):
    """Setting rate to None frees a waiter; setting it again limits from then on."""
    bucket = TokenBucket(1_000, burst=BLOCK)
    with trio.fail_after(GUARD):
        await bucket.acquire(BLOCK)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bucket.acquire, BLOCK)
            await trio.sleep(1)
            bucket.rate = None
        assert await move(bucket, 10 * MB) == 0
        bucket.rate = 1 * MB
        assert await move(bucket, 10 * MB) == pytest.approx(10, rel=0.01)


async def test_idle_bucket_bursts_at_most_one_block(autojump_clock):
    """After 100 s idle, 10 MB at 1 MB/s still take ~10 s: the saving is one block."""
    bucket = TokenBucket(1 * MB, burst=BLOCK)
    with trio.fail_after(GUARD):
        await move(bucket, 1 * MB)
        await trio.sleep(100)
        elapsed = await move(bucket, 10 * MB)
    assert elapsed == pytest.approx((10 * MB - BLOCK) / MB, rel=0.001)


async def test_block_larger_than_balance_and_burst(autojump_clock):
    """A 1 MB acquire at 100 kB/s (burst 64 KiB) goes into debt: the next waits ~10 s."""
    bucket = TokenBucket(100_000, burst=BLOCK)
    with trio.fail_after(GUARD):
        start = trio.current_time()
        await bucket.acquire(MB)  # the balance was one block: the rest is owed
        await bucket.acquire(1)
    assert trio.current_time() - start == pytest.approx((MB + 1 - BLOCK) / 100_000, rel=0.001)


async def test_concurrent_acquirers_are_served_in_turn(autojump_clock):
    """Waiters on a drained bucket are served in arrival order, one block per block time."""
    bucket = TokenBucket(1 * MB, burst=BLOCK)
    done: list[tuple[str, float]] = []

    async def waiter(name: str) -> None:
        await bucket.acquire(BLOCK)
        done.append((name, trio.current_time()))

    with trio.fail_after(GUARD):
        await bucket.acquire(BLOCK)  # drain the saved-up burst
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in "abcd":
                nursery.start_soon(waiter, name)
                await trio.testing.wait_all_tasks_blocked()
    assert [name for name, _ in done] == list("abcd")
    step = BLOCK / MB
    for index, (_, when) in enumerate(done):
        assert when - start == pytest.approx(step * (index + 1), rel=0.001)


@pytest.mark.parametrize("rate", [0, -1, "x", True, math.nan, math.inf, [1]])
def test_invalid_rates_are_refused(rate):
    """A rate that is not a positive finite number or None raises ValueError naming it."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate, burst=BLOCK)
    bucket = TokenBucket(None, burst=BLOCK)
    with pytest.raises(ValueError, match="rate"):
        bucket.rate = rate
    assert bucket.rate is None


@pytest.mark.parametrize("burst", [0, -1, True, 1.5])
def test_invalid_bursts_are_refused(burst):
    """A burst that is not a positive integer raises ValueError naming it."""
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=burst)


async def test_negative_amount_is_refused():
    """Acquiring a negative amount raises ValueError."""
    with pytest.raises(ValueError, match="amount"):
        await TokenBucket(1, burst=1).acquire(-1)
    with pytest.raises(ValueError, match="amount"):
        await Throttle().acquire(-1)


async def test_no_busy_waiting(autojump_clock):
    """A throttled transfer sleeps at most once per block, or once per poll_interval."""
    bucket = TokenBucket(1 * MB, burst=BLOCK)
    with trio.fail_after(GUARD):
        await move(bucket, 10 * MB)
    assert bucket.sleeps <= math.ceil(10 * MB / BLOCK)
    slow = TokenBucket(100_000, burst=BLOCK, poll_interval=0.25)
    with trio.fail_after(GUARD):
        await move(slow, 1 * MB)
    blocks = math.ceil(MB / BLOCK)
    assert slow.sleeps <= blocks * (math.ceil(BLOCK / 100_000 / 0.25) + 1)


async def test_cancelled_waiter_gives_its_bytes_back(autojump_clock):
    """A waiter cancelled in its debt refunds it: the next acquirer is not charged."""
    bucket = TokenBucket(10_000, burst=BLOCK)
    with trio.fail_after(GUARD):
        await bucket.acquire(BLOCK)
        await trio.sleep(BLOCK / 10_000)  # balance back to a full block
        with trio.move_on_after(1):
            await bucket.acquire(2 * BLOCK)  # would owe a block; cancelled
        start = trio.current_time()
        await bucket.acquire(BLOCK)
    assert trio.current_time() - start == 0


async def test_registry_combines_the_four_levels(autojump_clock):
    """The tightest of server, server-per-connection, user, user-per-connection applies."""
    server = Limited(read_speed_limit=8 * MB, write_speed_limit_per_connection=4 * MB)
    user = Limited(read_speed_limit_per_connection=1 * MB, write_speed_limit=2 * MB)
    registry = ThrottleRegistry(server, burst=BLOCK)
    read, write = registry.for_connection(user)
    assert (read.rate, write.rate) == (1 * MB, 2 * MB)
    with trio.fail_after(GUARD):
        assert await move(read, 10 * MB) == pytest.approx(10, rel=0.01)
        assert await move(write, 10 * MB) == pytest.approx(5, rel=0.02)
    anonymous_read, anonymous_write = registry.for_connection(None)
    assert (anonymous_read.rate, anonymous_write.rate) == (8 * MB, 4 * MB)


async def test_registry_user_limit_is_shared_by_its_connections(autojump_clock):
    """Two connections of a user limited to 1 MB/s get 0.5 MB/s each; another user is free."""
    registry = ThrottleRegistry(Limited(), burst=BLOCK)
    alice, bob = Limited(write_speed_limit=1 * MB), Limited(write_speed_limit=1 * MB)
    first = registry.for_connection(alice)[1]
    second = registry.for_connection(alice)[1]
    other = registry.for_connection(bob)[1]
    with trio.fail_after(GUARD):
        moved = await shares([first, second, other], 10)
    assert_equal_shares(moved[:2], 0.05)
    assert sum(moved[:2]) == pytest.approx(10 * MB, rel=0.02)
    assert moved[2] == pytest.approx(10 * MB, rel=0.02)


async def test_registry_per_connection_limits_are_per_connection(autojump_clock):
    """Per-connection limits of 1.5 MB/s under a 2 MB/s server give two connections ~1 MB/s."""
    server = Limited(read_speed_limit=2 * MB, read_speed_limit_per_connection=1.5 * MB)
    registry = ThrottleRegistry(server, burst=BLOCK)
    user = Limited()
    throttles: list[TokenBucket | Throttle] = [registry.for_connection(user)[0] for _ in "ab"]
    with trio.fail_after(GUARD):
        moved = await shares(throttles, 10)
    assert_equal_shares(moved, 0.05)
    assert sum(moved) == pytest.approx(20 * MB, rel=0.02)


async def test_registry_follows_attribute_changes_while_running(autojump_clock):
    """Raising server.write_speed_limit mid-transfer reaches a sleeping waiter within 0.25 s."""
    server = Limited(write_speed_limit=10_000)
    registry = ThrottleRegistry(server, burst=BLOCK, poll_interval=0.25)
    write = registry.for_connection(Limited())[1]
    with trio.fail_after(GUARD):
        await write.acquire(BLOCK)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(move, write, 10 * MB)  # first block owes 6.5 s
            await trio.sleep(1)
            start = trio.current_time()
            server.write_speed_limit = 10 * MB
        assert trio.current_time() - start == pytest.approx(1.0, abs=0.25 + 0.05)
        server.write_speed_limit = None
        assert await move(write, 10 * MB) == 0


async def test_registry_reports_a_bad_attribute_by_name(autojump_clock):
    """A limit attribute set to an invalid value fails the next acquire, naming it."""
    user = Limited()
    read, _ = ThrottleRegistry(Limited(), burst=BLOCK).for_connection(user)
    user.read_speed_limit_per_connection = 0
    with pytest.raises(ValueError, match="read_speed_limit_per_connection"):
        await read.acquire(1)
