"""Embed an FTP endpoint in a trio application, next to its other tasks.

``nursery.start(server.serve, host, 0)`` returns the bound address once the server accepts;
cancelling the nursery (Ctrl-C here) closes every session before it returns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

import trio_ftp


async def heartbeat() -> None:
    """Stands for the rest of the application."""
    while True:
        await trio.sleep(10)
        print("application still running")


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "hello.txt").write_text("hello from trio_ftp\n")
        server = trio_ftp.Server([trio_ftp.User("demo", "demo", base_path=Path(directory))])
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve, "127.0.0.1", 0)
            print(f"ftp://demo:demo@{host}:{port}/ (Ctrl-C to stop)")
            nursery.start_soon(heartbeat)


if __name__ == "__main__":
    trio.run(main)
