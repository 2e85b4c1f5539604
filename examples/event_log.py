"""An audit log: a task next to the server consumes ``server.events()``, one line per event.

The subscription is made before the server accepts, so nothing is missed; it never slows
the server (a full buffer drops events and counts them in ``events.dropped``) and its loop
ends by itself when the server stops::

    python examples/event_log.py [DIRECTORY]
    curl -T somefile ftp://alice:wonderland@127.0.0.1:2121/   # watch the log

``run(root, write=...)`` takes ``task_status``, so a test can start it with ``nursery.start``
on port 0 and collect the lines.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

import trio_ftp


def format_event(event: trio_ftp.ServerEvent) -> str:
    """One line: time, session, peer, user, kind, then whatever the kind carries."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
    parts = [stamp, f"#{event.session}", event.peer, event.user or "-", event.kind]
    if event.direction is not None:
        parts.append(event.direction)
    if event.path is not None:
        parts.append(event.path)
    if event.target is not None:
        parts.append(f"-> {event.target}")
    if event.kind != "transfer_started":  # it carries zeros: nothing has moved yet
        if event.bytes is not None:
            parts.append(f"{event.bytes} bytes")
        if event.seconds is not None:
            parts.append(f"in {event.seconds:.3f} s")
    return " ".join(parts)


async def log_events(
    server: trio_ftp.Server,
    write: Callable[[str], object] = print,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write one line per event of ``server`` until it stops (started once subscribed)."""
    with server.events() as events:
        task_status.started()
        async for event in events:
            write(format_event(event))
        if events.dropped:
            write(f"({events.dropped} events dropped: the log could not keep up)")


async def run(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    write: Callable[[str], object] = print,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``root`` to ``alice``/``wonderland``, logging every event, until cancelled."""
    server = trio_ftp.Server([trio_ftp.User("alice", "wonderland", base_path=root)])
    async with trio.open_nursery() as nursery:
        await nursery.start(log_events, server, write)  # subscribed before the first client
        address = await nursery.start(server.serve, host, port)
        task_status.started(address)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    print(f"serving {root} on ftp://alice:wonderland@127.0.0.1:2121/, logging events")
    trio.run(functools.partial(run, root, port=2121))


if __name__ == "__main__":
    main()
