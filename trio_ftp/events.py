"""What happens on the server, as a stream a trio application can consume.

``async for event in server.events(): ...`` (or ``with server.events() as events:``) gives
:class:`ServerEvent` objects: connect, login, login_failed, logout, transfer_started,
transfer_finished, transfer_aborted, mkdir, rmdir, delete, rename, chmod, set_mtime,
permission_denied, connection_refused, passive_ports_exhausted. The same events are the
audit log's lines (:mod:`trio_ftp.audit`).

Policy for slow consumers: each subscription has a bounded buffer (``buffer`` events); when
it is full, new events for that subscription are dropped and counted in
:attr:`EventStream.dropped`. Publishing never waits, so a slow consumer never slows a
transfer or a session. When the server stops, every subscription's iteration ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import trio

__all__ = ["EventBus", "EventKind", "EventStream", "ServerEvent", "TransferOutcome"]

#: What an event is about; ``ServerEvent.kind`` is one of these.
EventKind = Literal[
    "connect",
    "login",
    "login_failed",
    "logout",
    "transfer_started",
    "transfer_finished",
    "transfer_aborted",
    "mkdir",
    "rmdir",
    "delete",
    "rename",
    "chmod",
    "set_mtime",
    "permission_denied",
    "connection_refused",
    "passive_ports_exhausted",
]

#: How a transfer ended (``ServerEvent.outcome`` of ``transfer_finished``/``_aborted``):
#: ``complete``; ``aborted`` by ABOR; ``closed`` by the client (its data connection closed
#: early or reset, or its control connection gone); ``timeout`` (no data for
#: ``socket_timeout``); ``refused`` (no data connection came, or it had to be protected);
#: ``shutdown`` (the server closed); ``failed`` (the file system failed).
TransferOutcome = Literal[
    "complete", "aborted", "closed", "timeout", "refused", "shutdown", "failed"
]


@dataclass(frozen=True)
class ServerEvent:
    """One thing that happened.

    Attributes:
        kind: one of :data:`EventKind`.
        session: the session id (as in the log lines).
        peer: the client's ``host:port``.
        user: the login name when logged in; for ``login_failed``, the login attempted.
        path: the virtual path concerned (transfers, mkdir, rmdir, delete, rename source,
            chmod, set_mtime, permission_denied).
        target: the rename destination.
        direction: ``"download"``, ``"upload"`` or ``"listing"`` for transfers.
        bytes: bytes moved (transfer_finished / transfer_aborted).
        seconds: duration (transfer_finished / transfer_aborted).
        time: wall-clock time of the event (``time.time()``).
        outcome: how a transfer ended (:data:`TransferOutcome`).
        offset: where a transfer started in the file (REST), when not 0.
        mode: the permission bits ``chmod`` set.
        reason: why something was refused (permission_denied: the command;
            connection_refused: the limit or ban), or the time set (set_mtime:
            ``Modify=YYYYMMDDHHMMSS``).
        failures: failed logins in this session so far (login_failed).
    """

    kind: EventKind
    session: int
    peer: str
    user: str | None = None
    path: str | None = None
    target: str | None = None
    direction: str | None = None
    bytes: int | None = None
    seconds: float | None = None
    time: float = field(default_factory=time.time)
    outcome: TransferOutcome | None = None
    offset: int | None = None
    mode: int | None = None
    reason: str | None = None
    failures: int | None = None


class EventStream:
    """One subscription: an async iterator of events, with a bounded buffer."""

    def __init__(self, bus: EventBus, buffer: int) -> None:
        self._bus = bus
        self._send, self._receive = trio.open_memory_channel[ServerEvent](buffer)
        #: Events dropped because this subscription's buffer was full.
        self.dropped = 0

    def _offer(self, event: ServerEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        """Unsubscribe; a pending or later iteration ends."""
        self._bus._streams.discard(self)
        self._send.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[ServerEvent]:
        return self

    async def __anext__(self) -> ServerEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


class EventBus:
    """The server's publisher: fans each event out to every subscription, never waiting."""

    def __init__(self) -> None:
        self._streams: set[EventStream] = set()

    def subscribe(self, buffer: int = 256) -> EventStream:
        """A new subscription holding up to ``buffer`` unread events (then it drops)."""
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be a positive integer, got {buffer!r}")
        stream = EventStream(self, buffer)
        self._streams.add(stream)
        return stream

    @property
    def has_subscribers(self) -> bool:
        """Whether any subscription is open (publishers skip building events otherwise)."""
        return bool(self._streams)

    def publish(self, event: ServerEvent) -> None:
        """Offer ``event`` to every subscription (synchronous: never blocks the caller)."""
        for stream in list(self._streams):
            stream._offer(event)

    def close(self) -> None:
        """End every subscription (the server stopped)."""
        for stream in list(self._streams):
            stream.close()
