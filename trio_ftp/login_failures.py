"""Failed logins per client address, across sessions: the brake on password guessing
that a per-session limit alone is not (a guesser simply reconnects).

Pure bookkeeping on times the caller passes in (trio's clock in the server, so tests can
use ``MockClock``); memory is bounded whatever the clients do. :class:`FailureLedger` keeps
the times (the in-process store, :class:`~trio_ftp.stores.ProcessStore`, counts with it);
:class:`LoginFailures` adds a fixed limit and window.
"""

from __future__ import annotations

from collections import deque

__all__ = ["MAX_ADDRESSES", "FailureLedger", "LoginFailures"]

#: Addresses remembered at once; the least recently failing are forgotten first.
MAX_ADDRESSES = 65536


class FailureLedger:
    """The times of recent failures per address, at most ``max_addresses`` addresses."""

    def __init__(self, *, max_addresses: int = MAX_ADDRESSES) -> None:
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def record(self, address: str, now: float, *, keep: int) -> None:
        """Remember one failure at ``now``; only the ``keep`` most recent are kept."""
        times = self._failures.pop(address, None)  # re-inserted last: most recent
        if times is None or times.maxlen != keep:
            times = deque(times or (), maxlen=keep)
            while len(self._failures) >= self.max_addresses:
                del self._failures[next(iter(self._failures))]
        times.append(now)
        self._failures[address] = times

    def count(self, address: str, now: float, window: float) -> int:
        """Failures of ``address`` younger than ``window`` (older ones are forgotten)."""
        times = self._failures.get(address)
        if times is None:
            return 0
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            del self._failures[address]
        return len(times)

    def __len__(self) -> int:
        return len(self._failures)


class LoginFailures:
    """Counts failed logins per address over a sliding window.

    Args:
        limit: failures within ``window`` after which an address is refused; ``None``
            disables the count.
        window: seconds a failure is remembered.
        max_addresses: bound on the addresses tracked at once.
        ledger: the times to count in (a new one by default).
    """

    def __init__(
        self,
        limit: int | None,
        window: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        ledger: FailureLedger | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.ledger = ledger if ledger is not None else FailureLedger(max_addresses=max_addresses)

    @property
    def max_addresses(self) -> int:
        return self.ledger.max_addresses

    @property
    def _failures(self) -> dict[str, deque[float]]:
        return self.ledger._failures

    def record(self, address: str, now: float) -> None:
        """Remember one failed login from ``address``."""
        if self.limit is not None:
            self.ledger.record(address, now, keep=self.limit)

    def blocked(self, address: str, now: float) -> bool:
        """True while ``address`` has ``limit`` failures younger than ``window``."""
        if self.limit is None:
            return False
        return self.ledger.count(address, now, self.window) >= self.limit
