"""Serve until a signal, then close gracefully: the command line's and each worker's life.

The first signal stops accepting and lets running transfers finish for ``grace`` seconds
(``Server.close(grace=...)``); a second one during that time stops at once (transfers get
``426``).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import trio

from .server import Server

__all__ = ["serve_until_signal"]

logger = logging.getLogger("trio_ftp")


async def serve_until_signal(
    server: Server,
    host: str | None,
    port: int,
    *,
    grace: float,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    reuse_port: bool = False,
    on_serving: Callable[[tuple[str, int]], None] = lambda address: None,
    reload: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Start ``server`` (``OSError`` from the bind escapes unwrapped), call ``on_serving``
    with its address, serve until one of ``signals``, then close it within ``grace``.
    ``reload``: called on each SIGHUP while serving."""
    with trio.open_signal_receiver(*signals) as received:
        await server.start(host, port, reuse_port=reuse_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_forever)
            if reload is not None:
                nursery.start_soon(reload_on_sighup, reload)
            on_serving(server.address)
            async for signum in received:
                logger.info("%s: shutting down (grace %ss)", signal.Signals(signum).name, grace)
                break
            async with trio.open_nursery() as closing:
                closing.start_soon(_force_on_second_signal, received, closing.cancel_scope)
                await server.close(grace=grace)
                closing.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def _force_on_second_signal(
    signals: AsyncIterator[int], grace_scope: trio.CancelScope
) -> None:
    """A second signal during the grace period stops at once (transfers get 426)."""
    async for signum in signals:
        logger.info("%s again: stopping now", signal.Signals(signum).name)
        grace_scope.cancel()
        return


async def reload_on_sighup(reload: Callable[[], Awaitable[None]]) -> None:
    """Call ``reload()`` on each SIGHUP (one at a time), until cancelled."""
    with trio.open_signal_receiver(signal.SIGHUP) as received:
        async for _ in received:
            await reload()
