"""Limits shared by two servers through one store (Redis, the machine's SQLite file),
proven with real ftplib clients from two loopback source addresses."""

from __future__ import annotations

import contextlib
import ftplib
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running, in_thread
from redis_server import patient, patient_redis, running_redis

from trio_ftp import User
from trio_ftp.stores import MachineStore, RedisStore, ResilientStore, StateStore

StartServer = Callable[..., Awaitable[Running]]
TWO, THREE = "127.0.0.2", "127.0.0.3"


def connect(running: Running, source: str) -> ftplib.FTP:
    """An ftplib client connected from ``source`` (raises ``error_temp`` on a 421)."""
    client = ftplib.FTP(timeout=10, source_address=(source, 0))
    try:
        client.connect(running.host, running.port)
    except BaseException:
        client.close()
        raise
    return client


def greeting_code(running: Running, source: str) -> tuple[str, ftplib.FTP | None]:
    """The greeting's code, and the client when it was let in."""
    try:
        client = connect(running, source)
    except ftplib.error_temp as exc:
        return str(exc)[:3], None
    return client.getwelcome()[:3], client


@contextlib.asynccontextmanager
async def two_servers(
    start_server: StartServer, stores: list[StateStore], **kwargs: Any
) -> AsyncIterator[tuple[Running, ...]]:
    """Servers (two, usually), one per store object (all on one database); at the end the servers
    close, then the stores."""
    servers = [await start_server(state_store=store, **kwargs) for store in stores]
    try:
        yield tuple(servers)
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(10):
            for running in servers:
                await running.server.close()
            for store in stores:
                await store.aclose()


@pytest.fixture(params=["redis", "machine"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[StateStore]]:
    """Two store objects on one database, as two processes or machines would have."""
    if request.param == "machine":
        yield [patient(MachineStore(tmp_path / "limits.db")) for _ in range(2)]
        return
    with running_redis(tmp_path) as redis:
        yield [patient_redis(redis.url) for _ in range(2)]


def close_all(clients: list[ftplib.FTP | None]) -> None:
    for client in clients:
        if client is not None:
            client.close()


@pytest.mark.slow
async def test_per_ip_limit_holds_across_two_servers(
    start_server: StartServer, two_stores: list[StateStore]
) -> None:
    """maximum_connections_per_ip=2: two sessions from 127.0.0.2 on server 1, a third on
    server 2 gets 421; 127.0.0.3 still gets in; a session ending frees a slot for both."""
    async with two_servers(start_server, two_stores, maximum_connections_per_ip=2) as (s1, s2):
        clients: list[ftplib.FTP | None] = []
        try:
            for _ in range(2):
                code, client = await in_thread(greeting_code, s1, TWO)
                clients.append(client)
                assert code == "220"
            code, client = await in_thread(greeting_code, s2, TWO)
            clients.append(client)
            assert code == "421"
            code, client = await in_thread(greeting_code, s2, THREE)
            clients.append(client)
            assert code == "220"
            first = clients.pop(0)
            assert first is not None
            await in_thread(first.quit)
            with trio.fail_after(10):
                while True:  # the session's end is asynchronous: wait for its release
                    code, client = await in_thread(greeting_code, s2, TWO)
                    clients.append(client)
                    if code == "220":
                        break
                    await trio.sleep(0.02)
        finally:
            await in_thread(close_all, clients)


def fail_logins(running: Running, source: str, count: int) -> None:
    client = connect(running, source)
    try:
        for _ in range(count):
            with pytest.raises(ftplib.error_perm, match="530"):
                client.login(LOGIN, "wrong")
    finally:
        client.close()


@pytest.mark.slow
async def test_login_failures_on_one_server_ban_the_address_on_the_other(
    start_server: StartServer, two_stores: list[StateStore]
) -> None:
    """Three failed logins from 127.0.0.2 on server 1: server 2 refuses 127.0.0.2 at the
    greeting (421) and lets 127.0.0.3 in and log in."""
    async with two_servers(
        start_server, two_stores, maximum_login_failures_per_ip=3, maximum_login_attempts=None
    ) as (s1, s2):
        await in_thread(fail_logins, s1, TWO, 3)
        code, client = await in_thread(greeting_code, s2, TWO)
        await in_thread(close_all, [client])
        assert code == "421"
        code, client = await in_thread(greeting_code, s2, THREE)
        assert client is not None
        try:
            assert code == "220"
            await in_thread(client.login, LOGIN, PASSWORD)
        finally:
            await in_thread(client.close)


@pytest.mark.slow
async def test_a_users_maximum_connections_holds_across_two_servers(
    start_server: StartServer, two_stores: list[StateStore], root: Path
) -> None:
    """User.maximum_connections=1, each server with its own user manager (whose own count
    sees one session only): the second login, on the other server, gets 421; after the
    first logs out (REIN), it succeeds."""
    users = [User(LOGIN, PASSWORD, base_path=root, maximum_connections=1)]
    first = await start_server(users, state_store=two_stores[0])
    second = await start_server(list(users), state_store=two_stores[1])
    try:
        one = await in_thread(connect, first, TWO)
        other = await in_thread(connect, second, THREE)
        try:
            await in_thread(one.login, LOGIN, PASSWORD)
            with pytest.raises(ftplib.error_temp, match="421"):
                await in_thread(other.login, LOGIN, PASSWORD)
            assert (await in_thread(one.sendcmd, "REIN"))[:3] == "220"
            await in_thread(other.close)
            other = await in_thread(connect, second, THREE)
            await in_thread(other.login, LOGIN, PASSWORD)
        finally:
            await in_thread(close_all, [one, other])
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(10):
            for running in (first, second):
                await running.server.close()
            for store in two_stores:
                await store.aclose()


@pytest.mark.slow
async def test_redis_down_then_back(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-server stopped mid-run: sessions are still served within the short timeout
    (each process counting alone), one ERROR line says so; redis-server restarted on the
    same port: the counts are shared again."""
    caplog.set_level(logging.WARNING, logger="trio_ftp.stores")
    with running_redis(tmp_path) as redis:
        stores: list[StateStore] = [
            ResilientStore(RedisStore(redis.url), timeout=0.5, retry_after=0.5) for _ in range(2)
        ]
        async with two_servers(start_server, stores, maximum_connections_per_ip=1) as (s1, s2):
            await assert_shared(s1, s2)
            redis.stop()
            clients: list[ftplib.FTP | None] = []
            try:
                for running in (s1, s2):  # per process: one each from 127.0.0.2
                    start = trio.current_time()
                    code, client = await in_thread(greeting_code, running, TWO)
                    clients.append(client)
                    assert code == "220"
                    assert trio.current_time() - start < 2.0
                code, client = await in_thread(greeting_code, s1, TWO)
                clients.append(client)
                assert code == "421"  # the local count still holds
            finally:
                await in_thread(close_all, clients)
            assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"]
            redis.start()
            with trio.fail_after(15):
                while not await shared_now(s1, s2):  # noqa: ASYNC110 - polls another process
                    await trio.sleep(0.1)
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 2  # once per process (here: per store), however many calls
            assert sum("back" in r.getMessage() for r in caplog.records) >= 1


async def shared_now(s1: Running, s2: Running) -> bool:
    """True when a session from 127.0.0.2 on s1 keeps 127.0.0.2 out of s2 (limit 1)."""
    code, held = await in_thread(greeting_code, s1, TWO)
    try:
        if code != "220":
            return False
        code, other = await in_thread(greeting_code, s2, TWO)
        await in_thread(close_all, [other])
        return code == "421"
    finally:
        await in_thread(close_all, [held])
        with trio.fail_after(10):
            while s1.server.connections:  # noqa: ASYNC110 - the session's end, no event for it
                await trio.sleep(0.01)
            while s2.server.connections:  # noqa: ASYNC110
                await trio.sleep(0.01)


async def assert_shared(s1: Running, s2: Running) -> None:
    assert await shared_now(s1, s2)


@pytest.mark.slow
async def test_server_wide_maximum_connections_holds_across_two_servers(
    start_server: StartServer, two_stores: list[StateStore]
) -> None:
    """maximum_connections=2: two sessions on server 1 fill both; server 2, with no
    session of its own, refuses a third (421) from another address."""
    async with two_servers(start_server, two_stores, maximum_connections=2) as (s1, s2):
        clients: list[ftplib.FTP | None] = []
        try:
            for source in (TWO, THREE):
                code, client = await in_thread(greeting_code, s1, source)
                clients.append(client)
                assert code == "220"
            code, client = await in_thread(greeting_code, s2, "127.0.0.4")
            clients.append(client)
            assert code == "421"
            assert s2.server.available_connections.value == 2  # its own count: none
        finally:
            await in_thread(close_all, clients)


@pytest.mark.slow
async def test_a_hung_redis_delays_a_greeting_by_the_short_timeout_only(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-server frozen (SIGSTOP: connections accepted by the kernel, never answered):
    the first greeting waits the 0.5 s timeout once, the next ones none (the fallback
    answers during the back-off)."""
    caplog.set_level(logging.ERROR, logger="trio_ftp.stores")
    with running_redis(tmp_path) as redis:
        store = RedisStore(redis.url)
        async with two_servers(start_server, [store], maximum_connections_per_ip=5) as (s1,):
            assert redis.process is not None
            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                delays = []
                for _ in range(3):
                    start = trio.current_time()
                    code, client = await in_thread(greeting_code, s1, TWO)
                    delays.append(trio.current_time() - start)
                    await in_thread(close_all, [client])
                    assert code == "220"
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
    assert 0.5 <= delays[0] < 1.5
    assert max(delays[1:]) < 0.4
    assert len(caplog.records) == 1
