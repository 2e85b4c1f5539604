"""A server ported from aioftp (examples/ported_from_aioftp.py) against aioftp's own client.

The server's custom commands use aioftp's spellings unchanged (handlers found by name, the
decorators, ``connection.data_connection.write``, ``connection.loop.create_task``,
``connection.extra_workers``, ``trio_ftp.server.worker``); the client is aioftp's asyncio
``Client`` in a thread, as an aioftp user's tests would drive it.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aioftp
import pytest
import trio
from conftest import TLSCerts, in_thread
from test_examples import load_example

import trio_ftp

T = TypeVar("T")
LOGIN, PASSWORD = "alice", "wonderland"


class SequenceClient(aioftp.Client):
    """aioftp's tutorial pattern for a command with a data connection."""

    async def sequence(self, count: int) -> list[int]:
        stream = await self.get_stream(f"SEQN {count}", "1xx")
        received = b""
        while block := await stream.read(8192):
            received += block
        await stream.finish()
        return [int.from_bytes(received[i : i + 8], "big") for i in range(0, len(received), 8)]


async def start(nursery: trio.Nursery, root: Path) -> tuple[str, int]:
    module = load_example("ported_from_aioftp")
    users = [
        trio_ftp.User(
            LOGIN,
            PASSWORD,
            base_path=root,
            permissions=[
                trio_ftp.Permission("/", writable=False),
                trio_ftp.Permission("/secret", readable=False, writable=False),
            ],
        )
    ]
    server = module.NumbersServer(users, login_failure_delay=0)
    with trio.fail_after(10):
        address: tuple[str, int] = await nursery.start(server.serve, "127.0.0.1", 0)
    return address


async def with_client(address: tuple[str, int], job: Callable[[SequenceClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = SequenceClient(socket_timeout=10, connection_timeout=10)
        await client.connect(*address)
        try:
            await client.login(LOGIN, PASSWORD)
            result = await job(client)
            await client.quit()
        finally:
            client.close()
        return result

    return await in_thread(lambda: asyncio.run(asyncio.wait_for(main(), 20)))


async def test_data_command_written_for_aioftp(nursery: trio.Nursery, tmp_path: Path) -> None:
    address = await start(nursery, tmp_path)
    assert await with_client(address, lambda client: client.sequence(2000)) == list(range(2000))

    async def twice(client: SequenceClient) -> tuple[list[int], list[int]]:
        # the session goes on after the worker: a second run on the same connection
        return await client.sequence(3), await client.sequence(5)

    assert await with_client(address, twice) == ([0, 1, 2], [0, 1, 2, 3, 4])


async def test_data_command_needs_pasv_first(nursery: trio.Nursery, tmp_path: Path) -> None:
    address = await start(nursery, tmp_path)

    async def job(client: SequenceClient) -> tuple[str, ...]:
        with pytest.raises(aioftp.StatusCodeError) as raised:
            await client.command("SEQN 3", "1xx")
        return tuple(raised.value.received_codes)

    assert await with_client(address, job) == ("503",)


async def test_data_command_with_a_bad_argument(nursery: trio.Nursery, tmp_path: Path) -> None:
    address = await start(nursery, tmp_path)

    async def job(client: SequenceClient) -> tuple[str, ...]:
        _, writer = await client.get_passive_connection()
        try:
            with pytest.raises(aioftp.StatusCodeError) as raised:
                await client.command("SEQN many", "1xx")
        finally:
            writer.close()
        return tuple(raised.value.received_codes)

    assert await with_client(address, job) == ("501",)


async def test_path_command_written_for_aioftp(nursery: trio.Nursery, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"one\ntwo\nthree\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_bytes(b"x\n")
    address = await start(nursery, tmp_path)

    async def job(client: SequenceClient) -> list[tuple[str, ...]]:
        answers: list[tuple[str, ...]] = []
        code, info = await client.command("LNCT notes.txt", "213")
        answers.append(("213" if code.matches("213") else str(code), info[0].strip()))
        for path in ("missing.txt", "secret", "secret/key.txt", "../../etc/passwd"):
            with pytest.raises(aioftp.StatusCodeError) as raised:
                await client.command(f"LNCT {path}", "213")
            answers.append(tuple(raised.value.received_codes))
        return answers

    assert await with_client(address, job) == [
        ("213", "/notes.txt has 3 lines"),
        ("550",),  # path_must_exists
        ("550",),  # path_must_be_file
        ("550",),  # PathPermissions: /secret is not readable
        ("550",),  # confined: ".." stops at the user's root, where there is no etc/
    ]


def test_the_port_kept_aioftps_spelling() -> None:
    """The example's handlers are aioftp's: found by name, not registered with @command."""
    source = (Path(__file__).parent.parent / "examples" / "ported_from_aioftp.py").read_text()
    assert "@trio_ftp.command" not in source
    for spelling in (
        "connection.loop.create_task(",
        "connection.extra_workers.add(task)",
        "@trio_ftp.server.worker",
        "del connection.data_connection",
        "await stream.write(",
    ):
        assert spelling in source
    server = load_example("ported_from_aioftp").NumbersServer()
    assert {"seqn", "lnct"} <= set(server.commands_mapping)


# aioftp's client leaves the raw transport under a TLS data connection to the garbage
# collector (its bug, not the server's): the warning is expected here.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_aioftp_client_resumes_the_tls_session(
    nursery: trio.Nursery, tmp_path: Path, tls: TLSCerts
) -> None:
    """aioftp's client (implicit FTPS) passes ``tls_require_session_reuse=True``, as
    docs/ftps.md says: its data connections resume the control connection's TLS session."""
    (tmp_path / "a.bin").write_bytes(b"resumed")
    server = trio_ftp.Server(
        [trio_ftp.User(LOGIN, PASSWORD, base_path=tmp_path)],
        ssl=tls.server_context,
        tls_require_session_reuse=True,
    )
    host, port = await nursery.start(server.serve, "127.0.0.1", 0)

    async def main() -> bytes:
        client = aioftp.Client(ssl=tls.client_context, socket_timeout=10)
        await client.connect(host, port)
        try:
            await client.login(LOGIN, PASSWORD)
            async with client.download_stream("a.bin") as stream:
                data = await stream.read()
            await client.quit()
        finally:
            client.close()
        return data

    assert await in_thread(lambda: asyncio.run(asyncio.wait_for(main(), 20))) == b"resumed"
    gc.collect()  # collect the leaked transport now, while its warning is ignored
    await server.close()
