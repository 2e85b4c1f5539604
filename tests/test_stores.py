"""The state stores alone: atomic slots, leases, failures, dead processes, the fallback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio
from redis_server import RedisServer, running_redis

from trio_ftp.stores import (
    MachineStore,
    ProcessStore,
    RedisStore,
    ResilientStore,
    StateStore,
    open_store,
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["machine", "redis"])
async def shared_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes stores sharing one database (closed at the end), as separate processes would."""
    made: list[StateStore] = []
    with running_redis(tmp_path) if request.param == "redis" else _nothing() as redis:

        def make() -> StateStore:
            if redis is None:
                store: StateStore = MachineStore(tmp_path / "limits.db", timeout=5)
            else:
                store = RedisStore(redis.url, timeout=5)
            made.append(store)
            return store

        yield make
        for store in made:
            await store.aclose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_acquire_is_atomic_under_concurrency(shared_stores: StoreFactory) -> None:
    """30 sessions racing for 5 slots through two store objects (two connections, two
    threads at once): exactly 5 win, and a release lets exactly one more in."""
    stores = [shared_stores(), shared_stores()]
    results: dict[str, bool] = {}

    async def take(n: int) -> None:
        holder = f"h{n}"
        results[holder] = await stores[n % 2].acquire("conn:server", 5, holder)

    async with trio.open_nursery() as nursery:
        for n in range(30):
            nursery.start_soon(take, n)
    winners = [holder for holder, won in results.items() if won]
    assert len(winners) == 5
    assert await stores[0].acquire("conn:server", 5, winners[0])  # a holder keeps its slot
    assert not await stores[1].acquire("conn:server", 5, "late")
    await stores[1].release("conn:server", winners[0])
    assert await stores[0].acquire("conn:server", 5, "late")
    assert not await stores[1].acquire("conn:server", 5, "later")
    assert await stores[1].acquire("conn:ip:127.0.0.2", 5, "later")  # keys are apart


async def test_failures_are_counted_across_stores_within_the_window(
    shared_stores: StoreFactory,
) -> None:
    """A failure recorded through one store counts through the other; the window and
    ``keep`` bound what is counted; addresses are apart."""
    first, second = shared_stores(), shared_stores()
    for _ in range(3):
        await first.record_failure("127.0.0.2", 600, keep=2)
    assert await second.failure_count("127.0.0.2", 600) == 2  # only `keep` are kept
    assert await second.failure_count("127.0.0.3", 600) == 0
    await second.record_failure("127.0.0.3", 600)
    assert await first.failure_count("127.0.0.3", 600) == 1
    await trio.sleep(0.1)  # the time that must pass, not a wait for an event
    assert await first.failure_count("127.0.0.3", 0.05) == 0  # out of a short window


async def test_prefixes_keep_deployments_apart(redis_server: RedisServer) -> None:
    """Two prefixes in one Redis are two sets of counts."""
    one = RedisStore(redis_server.url, prefix="one:")
    two = RedisStore(redis_server.url, prefix="two:")
    try:
        assert await one.acquire("conn:server", 1, "a")
        assert await two.acquire("conn:server", 1, "b")
        assert not await one.acquire("conn:server", 1, "b")
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.slow
async def test_a_vanished_holders_lease_expires_and_a_live_one_is_renewed(
    redis_server: RedisServer,
) -> None:
    """A holder whose store stops renewing loses its slot after the lease; one whose
    store's keep_alive runs keeps it past several leases."""
    lease = 0.3
    vanished = RedisStore(redis_server.url, lease=lease)
    alive = RedisStore(redis_server.url, lease=lease)
    other = RedisStore(redis_server.url, lease=lease)
    try:
        assert await vanished.acquire("conn:ip:127.0.0.2", 1, "gone")
        assert await alive.acquire("conn:ip:127.0.0.3", 1, "here")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(alive.keep_alive)
            assert not await other.acquire("conn:ip:127.0.0.2", 1, "next")
            with trio.fail_after(5):
                while not await other.acquire("conn:ip:127.0.0.2", 1, "next"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await trio.sleep(4 * lease)  # the time that must pass, not a wait for an event
            assert not await other.acquire("conn:ip:127.0.0.3", 1, "next")
            nursery.cancel_scope.cancel()
    finally:
        for store in (vanished, alive, other):
            await store.aclose()


async def test_renewal_puts_holders_back_into_an_emptied_redis(
    redis_server: RedisServer,
) -> None:
    """Redis restarted empty: the next renewal puts the live holders back."""
    store = RedisStore(redis_server.url)
    try:
        assert await store.acquire("conn:server", 1, "here")
        await trio.to_thread.run_sync(store.client.flushdb)
        assert await store.acquire("conn:server", 1, "stranger")
        await store.release("conn:server", "stranger")
        await store.renew()
        assert not await store.acquire("conn:server", 1, "stranger")
        await store.release("conn:server", "here")
        await store.renew()  # released: not put back
        assert await store.acquire("conn:server", 1, "stranger")
    finally:
        await store.aclose()


_CHILD = textwrap.dedent(
    """
    import sys, time, trio
    from trio_ftp.stores import MachineStore

    async def main():
        store = MachineStore(sys.argv[1])
        assert await store.acquire("conn:server", 3, "child:1")
        assert await store.acquire("conn:ip:127.0.0.2", 3, "child:1")
        print("ready", flush=True)
        await trio.sleep_forever()

    trio.run(main)
    """
)


def _child_holding_slots(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


@pytest.mark.slow
async def test_forget_process_frees_a_dead_workers_slots(tmp_path: Path) -> None:
    """A real child process takes slots and is killed: they stay taken (its pid is in the
    rows) until forget_process(path, pid); a store opened afterwards purges them too."""
    path = tmp_path / "limits.db"
    store = MachineStore(path, timeout=5)
    try:
        for freed_by in ("forget_process", "reopening"):
            child = await trio.to_thread.run_sync(_child_holding_slots, path)
            assert child.stdout is not None
            child.stdout.close()
            assert await store.acquire("conn:server", 3, "me:1")
            assert not await store.acquire("conn:server", 2, "me:2")  # child's + mine
            child.kill()
            await trio.to_thread.run_sync(child.wait)
            assert not await store.acquire("conn:server", 2, "me:2")  # still the child's
            if freed_by == "forget_process":
                assert MachineStore.forget_process(path, child.pid) == 2
                assert MachineStore.forget_process(path, child.pid) == 0
            else:
                reopened = MachineStore(path, timeout=5)  # opening purges dead pids
                await reopened.aclose()
            assert await store.acquire("conn:server", 2, "me:2")
            await store.release("conn:server", "me:1")
            await store.release("conn:server", "me:2")
    finally:
        await store.aclose()


async def test_process_store_counts_in_memory_on_trios_clock(autojump_clock: object) -> None:
    """The default store: slots per key, failures within the window of trio's clock."""
    store = ProcessStore()
    assert not store.shared
    assert await store.acquire("k", 1, "a")
    assert await store.acquire("k", 1, "a")
    assert not await store.acquire("k", 1, "b")
    await store.release("k", "a")
    await store.release("k", "a")  # again: nothing
    assert store.holders == {}
    await store.record_failure("127.0.0.2", 10, keep=5)
    await trio.sleep(6)
    await store.record_failure("127.0.0.2", 10, keep=5)
    assert await store.failure_count("127.0.0.2", 10) == 2
    await trio.sleep(5)
    assert await store.failure_count("127.0.0.2", 10) == 1
    await store.keep_alive()  # nothing to keep alive: returns


class HangingStore(StateStore):
    """A store of someone else's making whose database never answers."""

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        await trio.sleep_forever()
        raise AssertionError

    async def release(self, key: str, holder: str) -> None:
        await trio.sleep_forever()

    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        raise ConnectionError("no database")

    async def failure_count(self, address: str, window: float) -> int:
        await trio.sleep_forever()
        raise AssertionError

    async def keep_alive(self) -> None:
        raise ConnectionError("no database")


async def test_a_store_that_hangs_costs_one_timeout_then_the_fallback_answers(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    """The first call waits ``timeout`` and falls back; during ``retry_after`` calls go
    straight to the per-process counts; one ERROR line per ``log_every``; a slot granted
    locally is released locally."""
    caplog.set_level(logging.ERROR, logger="trio_ftp.stores")
    store = ResilientStore(HangingStore(), timeout=0.5, retry_after=5, log_every=60)
    start = trio.current_time()
    assert await store.acquire("k", 1, "a")
    assert trio.current_time() - start == pytest.approx(0.5)
    assert not store.up
    assert not await store.acquire("k", 1, "b")  # counted locally, at once
    assert trio.current_time() - start == pytest.approx(0.5)
    await store.release("k", "a")
    assert store.local.holders == {}
    await trio.sleep(5)
    await store.record_failure("127.0.0.2", 60)  # the probe: raises, falls back
    assert await store.failure_count("127.0.0.2", 60) == 1  # recorded locally all the same
    assert len(caplog.records) == 1
    await trio.sleep(60)
    assert await store.acquire("k", 1, "c")  # another probe, another timeout, one line more
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"]
    assert "2 failure(s)" in caplog.records[1].getMessage()
    with trio.move_on_after(12):  # keep_alive raising is retried, never ends the server
        await store.keep_alive()


async def test_open_store_by_url(tmp_path: Path, redis_server: RedisServer) -> None:
    """redis:// and sqlite:/// make the stores; anything else is a clear ValueError."""
    store = open_store(redis_server.url)
    assert isinstance(store, RedisStore)
    assert await store.acquire("k", 1, "a")
    await store.aclose()
    machine = open_store(f"sqlite://{tmp_path}/limits.db")
    assert isinstance(machine, MachineStore)
    assert machine.path == tmp_path / "limits.db"
    await machine.aclose()
    for url in ("http://127.0.0.1/", "limits.db", "sqlite://relative.db"):
        with pytest.raises(ValueError, match="state store"):
            open_store(url)


async def test_cli_state_store_option_and_config_key(tmp_path: Path) -> None:
    """--state-store (and the config file's state-store key) choose the server's store;
    a URL that names none is a configuration error."""
    from trio_ftp.__main__ import build_server, parse_args
    from trio_ftp.config import ConfigError

    url = f"sqlite://{tmp_path}/limits.db"
    server = build_server(parse_args(["--state-store", url, str(tmp_path)]))
    assert isinstance(server.state_store, MachineStore)
    assert isinstance(server.runtime.state_store, ResilientStore)  # bounded, with a fallback
    await server.state_store.aclose()
    config = tmp_path / "ftp.toml"
    config.write_text(f'state-store = "{url}"\n')
    server = build_server(parse_args(["--config", str(config), str(tmp_path)]))
    assert isinstance(server.state_store, MachineStore)
    await server.state_store.aclose()
    assert isinstance(build_server(parse_args([str(tmp_path)])).state_store, ProcessStore)
    with pytest.raises(ConfigError, match="state store"):
        build_server(parse_args(["--state-store", "memcached://x", str(tmp_path)]))


def test_login_failures_property_is_deprecated_and_local_only(tmp_path: Path) -> None:
    """server.login_failures still reads a ProcessStore's table (with a DeprecationWarning);
    for a shared store, which keeps no such table, it says what to use instead."""
    from trio_ftp import Server

    server = Server(maximum_login_failures_per_ip=2, login_failure_window=60)
    assert isinstance(server.state_store, ProcessStore)
    server.state_store.failures.record("127.0.0.2", 0.0, keep=2)
    server.state_store.failures.record("127.0.0.2", 1.0, keep=2)
    with pytest.warns(DeprecationWarning, match="state_store"):
        table = server.login_failures
    assert table.blocked("127.0.0.2", 2.0)
    assert not table.blocked("127.0.0.2", 61.0)
    store = MachineStore(tmp_path / "limits.db")
    try:
        shared = Server(state_store=store)
        with (
            pytest.warns(DeprecationWarning, match="state_store"),
            pytest.raises(TypeError, match="failure_count"),
        ):
            shared.login_failures  # noqa: B018
    finally:
        trio.run(store.aclose)
