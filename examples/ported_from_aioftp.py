"""A server written for aioftp, moved to trio_ftp.

What changed from the aioftp version: ``import aioftp`` became ``import trio_ftp`` (and
``aioftp.`` became ``trio_ftp.``), ``asyncio.run(server.run(...))`` became
``trio.run(server.run, ...)``, and ``get_paths`` is awaited (it is a coroutine here: the
confinement check resolves symlinks off the event loop; forgetting the ``await`` raises
``TypeError`` when the class is created). Everything else is aioftp's spelling: the
handlers found by name, the decorators, ``connection.data_connection`` with ``write``,
``connection.loop.create_task`` and ``connection.extra_workers``, ``trio_ftp.server.worker``.

Two commands in the style of aioftp's developer tutorial:

- ``SEQN count`` sends the numbers ``0 .. count-1``, 8 bytes each, big-endian, over the data
  connection (after ``PASV``), then ``200``;
- ``LNCT path`` answers ``213`` with the number of lines of a file the user may read.

Run it, then try it with aioftp's client (``tests/test_aioftp_port.py`` does)::

    python examples/ported_from_aioftp.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

import trio_ftp


class NumbersServer(trio_ftp.Server):
    """``Server`` plus ``SEQN`` and ``LNCT``, written as for aioftp."""

    @trio_ftp.ConnectionConditions(
        trio_ftp.ConnectionConditions.login_required,
        trio_ftp.ConnectionConditions.passive_server_started,
    )
    async def seqn(self, connection: Any, rest: Any) -> bool:
        @trio_ftp.ConnectionConditions(
            trio_ftp.ConnectionConditions.data_connection_made,
            wait=True,
            fail_code="425",
            fail_info="Can't open data connection",
        )
        @trio_ftp.server.worker
        async def seqn_worker(self: Any, connection: Any, rest: Any) -> bool:
            stream = connection.data_connection
            del connection.data_connection
            async with stream:
                for number in range(count):
                    await stream.write(number.to_bytes(8, "big"))
            connection.response("200", "sequence sent")
            return True

        try:
            count = int(rest)
        except ValueError:
            connection.response("501", "SEQN needs a number")
            return True
        task = connection.loop.create_task(seqn_worker(self, connection, rest))
        connection.extra_workers.add(task)
        connection.response("150", "sending the sequence")
        return True

    @trio_ftp.ConnectionConditions(trio_ftp.ConnectionConditions.login_required)
    @trio_ftp.PathConditions(
        trio_ftp.PathConditions.path_must_exists,
        trio_ftp.PathConditions.path_must_be_file,
    )
    @trio_ftp.PathPermissions(trio_ftp.PathPermissions.readable)
    async def lnct(self, connection: Any, rest: Any) -> bool:
        real_path, virtual_path = await self.get_paths(connection, rest)
        lines = 0
        async with connection.path_io.open(real_path, mode="rb") as file:
            async for block in file.iter_by_block():
                lines += block.count(b"\n")
        connection.response("213", f"{virtual_path} has {lines} lines")
        return True


def main() -> None:
    users = [
        trio_ftp.User(
            "alice",
            "wonderland",
            base_path=Path("."),
            permissions=[trio_ftp.Permission("/", readable=True, writable=False)],
        )
    ]
    server = NumbersServer(users)
    print("serving . on 127.0.0.1:2121 as alice (SEQN, LNCT)")
    trio.run(server.run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
