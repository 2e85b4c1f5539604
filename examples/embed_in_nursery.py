"""Embed an FTP endpoint in a trio application, next to its other tasks.

``nursery.start(server.serve, host, 0)`` returns the bound address once the server accepts;
cancelling the nursery (Ctrl-C here) closes every session before it returns::

    python examples/embed_in_nursery.py
    curl ftp://demo:demo@127.0.0.1:PORT/hello.txt   # PORT: the one it prints

``run_app`` takes ``task_status`` so a test (or a bigger application) can start it with
``nursery.start`` and learn the address, then cancel it when done.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

import trio_ftp

GREETING = b"hello from trio_ftp\n"


async def heartbeat(beats: list[int], interval: float = 10) -> None:
    """Stands for the rest of the application: it keeps running while FTP is served."""
    while True:
        await trio.sleep(interval)
        beats.append(len(beats) + 1)
        print("application still running")


async def run_app(
    directory: Path,
    *,
    port: int = 0,
    beats: list[int] | None = None,
    interval: float = 10,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``directory`` (as ``demo``/``demo``) next to the heartbeat, until cancelled.

    Reports the FTP server's ``(host, port)`` through ``task_status``.
    """
    (directory / "hello.txt").write_bytes(GREETING)
    server = trio_ftp.Server([trio_ftp.User("demo", "demo", base_path=directory)])
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server.serve, "127.0.0.1", port)
        nursery.start_soon(heartbeat, [] if beats is None else beats, interval)
        task_status.started((host, port))


async def app() -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(run_app, Path(directory))
            print(f"ftp://demo:demo@{host}:{port}/hello.txt (Ctrl-C to stop)")


def main() -> None:
    trio.run(app)


if __name__ == "__main__":
    main()
