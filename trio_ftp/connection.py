"""Per-session state, shaped like aioftp's ``Connection`` but built on trio events.

Handlers read and write session state as attributes (``connection.user``,
``connection.restart_offset``); a key that is not set raises ``AttributeError``; ``del``
removes it. :meth:`Connection.wait_for` lets a handler wait (bounded) for a key another task
sets, which is how ``ConnectionConditions(..., wait=True)`` waits for a data connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import trio

__all__ = ["Connection"]

_SLOTS = ("_values", "_waiters")


class Connection:
    """A session's state container: attribute and item access, deletion, bounded waits.

    ``connection.response(code, text)`` (set by the session) queues a reply; replies are
    written in order by the session's one writer.
    """

    __slots__ = _SLOTS

    _values: dict[str, Any]
    _waiters: dict[str, trio.Event]

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_values", dict(kwargs))
        object.__setattr__(self, "_waiters", {})

    # attribute access ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{name!r} not in connection") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"{name!r} not in connection") from None

    # mapping access -----------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._values[name] = value
        waiter = self._waiters.pop(name, None)
        if waiter is not None:
            waiter.set()

    def __delitem__(self, name: str) -> None:
        del self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when it is not set."""
        return self._values.get(name, default)

    def pop(self, name: str, default: Any = None) -> Any:
        """Remove ``name`` and return its value (``default`` when it is not set)."""
        return self._values.pop(name, default)

    async def wait_for(self, *names: str) -> None:
        """Wait until every key in ``names`` is set.

        Timeouts: none here; bound the wait where it is made (``trio.move_on_after``).
        """
        for name in names:
            while name not in self._values:
                await self._waiters.setdefault(name, trio.Event()).wait()

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self._values))
        return f"Connection({keys})"
