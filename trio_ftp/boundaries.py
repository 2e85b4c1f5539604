"""Calls into code the server does not own: their deadlines, and how their failures end.

User managers, path-IO backends, an overridden ``greeting``, a ``passive_address``
callable, custom commands: each is a boundary. An :class:`Exception` raised there, or a
call that overruns its deadline, costs at most the session that made the call: it is logged
once (the traceback for an exception, one WARNING line for a timeout) and becomes a reply.
``trio.Cancelled``, ``KeyboardInterrupt`` and any ``BaseExceptionGroup`` holding them are
never caught here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .errors import FTPError, ReplyError
from .validation import as_seconds

__all__ = [
    "SESSION_END_TIMEOUT",
    "UserCodeFailed",
    "call_user_code",
    "finish_despite_cancellation",
    "session_end_limit",
]

T = TypeVar("T")

#: Seconds each call into user code may take while a session ends (``notify_logout``, the
#: close of a file a cancelled transfer left open), whatever its own timeout: so that
#: ``Server.close()`` always returns. Read at call time (a test may lower it).
SESSION_END_TIMEOUT = 5.0


class UserCodeFailed(ReplyError):
    """A call into user code raised or overran its deadline; already logged where it
    happened, so whoever answers it logs no second traceback."""


def session_end_limit(own: float | None) -> float:
    """Seconds a call made while a session ends may take: its own timeout, capped by
    :data:`SESSION_END_TIMEOUT`."""
    return min(as_seconds(own), SESSION_END_TIMEOUT)


async def call_user_code(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    seconds: float | None,
    log: logging.Logger | logging.LoggerAdapter[Any],
    failed: UserCodeFailed,
    timed_out: UserCodeFailed | None = None,
) -> T:
    """``await call()`` within ``seconds`` (``None``: no limit).

    An :class:`~trio_ftp.errors.FTPError` passes through (user code may answer on purpose).
    Any other :class:`Exception` (an ``ExceptionGroup`` too) is logged with its traceback,
    then ``failed`` is raised; a timeout is logged at WARNING, then ``timed_out`` (or
    ``failed``) is raised. ``what`` names the call in the log; anything the client chose
    in it must already be escaped (``repr``).
    """
    try:
        if seconds is None:  # no deadline, no cancel scope
            return await call()
        with trio.move_on_after(seconds):
            return await call()
    except FTPError:
        raise
    except Exception:
        log.exception("%s raised", what)
        raise failed from None
    log.warning("%s did not return within %g s", what, seconds)
    raise timed_out or failed


async def finish_despite_cancellation(
    call: Callable[[], Awaitable[None]],
    *,
    what: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """``await call()`` shielded from cancellation, so cleanup (a file's close) is not cut
    halfway; but once the caller is cancelled, ``call`` has :data:`SESSION_END_TIMEOUT`
    more seconds, then it is cut (logged at WARNING) and the cancellation goes on.

    A plain shield would let a close that never returns hold ``Server.close()`` forever.
    Costs a child task, which only watches for the caller's cancellation.
    """
    shield = trio.CancelScope(shield=True)
    failure: Exception | None = None

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:  # the caller's cancellation (or ours, once call is done)
            shield.deadline = min(shield.deadline, trio.current_time() + SESSION_END_TIMEOUT)
            # Not re-raised: the caller's cancellation is still in force and is raised
            # below; re-raised here it would leave the nursery wrapped in a group.

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        with shield:
            try:
                await call()
            except Exception as exc:  # raised after the nursery, unwrapped
                failure = exc
        nursery.cancel_scope.cancel()
    if shield.cancelled_caught:
        log.warning("%s did not return within %g s of cancellation", what, SESSION_END_TIMEOUT)
    if failure is not None:
        raise failure
    await trio.lowlevel.checkpoint_if_cancelled()
