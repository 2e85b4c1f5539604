"""No user enumeration, and no talking to web clients (issue "Hardening").

An unknown login and a known login with a wrong password must look the same from the wire:
same replies, same time (a slow password check included). A connection whose first line is
an HTTP request is closed at once, without disturbing anyone else.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running, default_users
from wire import (
    Wire,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

from trio_ftp import MemoryUserManager, User

DELAY = 0.3
SAMPLES = 4
UNKNOWN = "nosuchuser"


async def greeted(running: Running) -> Wire:
    wire = await Wire.connect(running.host, running.port)
    assert (await wire.greeting()).startswith(b"220")
    return wire


async def failed_login(running: Running, login: str) -> tuple[bytes, bytes, float]:
    """USER ``login``, then a wrong PASS on a fresh session: (USER reply, PASS reply,
    seconds from sending PASS to its reply)."""
    wire = await greeted(running)
    try:
        user_reply = await wire.command(f"USER {login}")
        await wire.send(b"PASS wrong-password\r\n")
        start = trio.current_time()
        pass_reply = await wire.reply()
        return user_reply, pass_reply, trio.current_time() - start
    finally:
        await wire.aclose()


async def sample(running: Running) -> dict[str, list[tuple[bytes, bytes, float]]]:
    """``SAMPLES`` failed logins for the unknown and for the known login, all at once (each
    on its own session, so the per-session attempt limit plays no part)."""
    results: dict[str, list[tuple[bytes, bytes, float]]] = {UNKNOWN: [], LOGIN: []}

    async def one(login: str) -> None:
        results[login].append(await failed_login(running, login))

    async with trio.open_nursery() as nursery:
        for _ in range(SAMPLES):
            for login in (UNKNOWN, LOGIN):
                nursery.start_soon(one, login)
    return results


def replies_and_medians(
    results: dict[str, list[tuple[bytes, bytes, float]]],
) -> tuple[set[bytes], set[bytes], float, float]:
    user_replies = {user for runs in results.values() for user, _, _ in runs}
    pass_replies = {reply for runs in results.values() for _, reply, _ in runs}
    unknown = statistics.median(seconds for _, _, seconds in results[UNKNOWN])
    known = statistics.median(seconds for _, _, seconds in results[LOGIN])
    return user_replies, pass_replies, unknown, known


async def test_user_reply_is_the_same_for_unknown_and_known_logins(
    start_server: Callable[..., Awaitable[Running]],
) -> None:
    """``USER nosuchuser`` and ``USER user`` both get ``331`` with the identical text."""
    running = await start_server(login_failure_delay=DELAY)
    unknown, known = await greeted(running), await greeted(running)
    try:
        unknown_reply = await unknown.command(f"USER {UNKNOWN}")
        known_reply = await known.command(f"USER {LOGIN}")
    finally:
        await unknown.aclose()
        await known.aclose()
    assert unknown_reply.startswith(b"331 "), unknown_reply
    assert unknown_reply == known_reply


async def test_a_failed_password_looks_the_same_for_unknown_and_known_logins(
    start_server: Callable[..., Awaitable[Running]],
) -> None:
    """A wrong PASS gets the same reply after the same time (>= delay), user known or not."""
    running = await start_server(login_failure_delay=DELAY)
    results = await sample(running)
    user_replies, pass_replies, unknown, known = replies_and_medians(results)
    assert len(user_replies) == 1, user_replies
    assert len(pass_replies) == 1, pass_replies
    assert next(iter(pass_replies)).startswith(b"530 "), pass_replies
    assert unknown >= DELAY, results
    assert known >= DELAY, results
    assert abs(unknown - known) < 0.1, (unknown, known)


async def test_user_without_pass_neither_reserves_a_slot_nor_tells_the_user_exists(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """USER without PASS takes no slot: no 421 oracle, no lockout; the limit holds at login."""
    user = User(LOGIN, PASSWORD, base_path=root, maximum_connections=1)
    running = await start_server([user], login_failure_delay=0)
    squatter, probe, owner, second = [await greeted(running) for _ in range(4)]
    try:
        unknown_reply = await probe.command(f"USER {UNKNOWN}")
        assert unknown_reply.startswith(b"331 "), unknown_reply
        # Someone without the password names the user and stays.
        assert await squatter.command(f"USER {LOGIN}") == unknown_reply
        # The user is still told apart from nobody...
        assert await probe.command(f"USER {LOGIN}") == unknown_reply
        # ...and the owner of the password still gets in.
        assert (await owner.login(LOGIN, PASSWORD)).startswith(b"230")
        # The limit itself holds for logged-in sessions.
        assert await second.command(f"USER {LOGIN}") == unknown_reply
        reply = await second.command(f"PASS {PASSWORD}")
        assert not reply.startswith(b"230"), reply
    finally:
        for wire in (squatter, probe, owner, second):
            await wire.aclose()


class SlowHashingUsers(MemoryUserManager):
    """A user manager whose password check takes 0.2 s, as a real password hash does."""

    async def authenticate(self, user: User, password: str) -> bool:
        await trio.sleep(0.2)
        return await super().authenticate(user, password)


async def test_a_slow_password_check_does_not_tell_known_logins_apart(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A 0.2 s password check does not make a known login's wrong PASS slower than unknown's."""
    running = await start_server(SlowHashingUsers(default_users(root)), login_failure_delay=DELAY)
    results = await sample(running)
    user_replies, pass_replies, unknown, known = replies_and_medians(results)
    assert len(user_replies) == 1, user_replies
    assert len(pass_replies) == 1, pass_replies
    assert abs(unknown - known) < 0.1, (unknown, known)
    # the slow manager still lets the right password in
    wire = await greeted(running)
    try:
        assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    finally:
        await wire.aclose()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /x HTTP/1.0\r\n",
        b"CONNECT a:21 HTTP/1.1\r\n",
    ],
    ids=["GET", "POST", "CONNECT"],
)
async def test_an_http_request_is_closed_at_once(
    start_server: Callable[..., Awaitable[Running]], request_bytes: bytes
) -> None:
    """A session opening with an HTTP request is closed within 2 s; other sessions go on."""
    running = await start_server()
    bystander = await greeted(running)
    try:
        assert (await bystander.login(LOGIN, PASSWORD)).startswith(b"230")
        browser = await greeted(running)
        try:
            await browser.send(request_bytes)
            assert await browser.closed(within=2), "the HTTP session was kept open"
        finally:
            await browser.aclose()
        assert (await bystander.command("NOOP")).startswith(b"200")
        assert (await bystander.command("PWD")).startswith(b'257 "/"')
        newcomer = await greeted(running)
        try:
            assert (await newcomer.login(LOGIN, PASSWORD)).startswith(b"230")
        finally:
            await newcomer.aclose()
    finally:
        await bystander.aclose()
