"""Failed logins per client address, across sessions: the brake on password guessing
that a per-session limit alone is not (a guesser simply reconnects).

Pure bookkeeping on times the caller passes in (trio's clock in the server, so tests can
use ``MockClock``); memory is bounded whatever the clients do.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LoginFailures"]

#: Addresses remembered at once; the least recently failing are forgotten first.
MAX_ADDRESSES = 65536


class LoginFailures:
    """Counts failed logins per address over a sliding window.

    Args:
        limit: failures within ``window`` after which an address is refused; ``None``
            disables the count.
        window: seconds a failure is remembered.
        max_addresses: bound on the addresses tracked at once.
    """

    def __init__(
        self, limit: int | None, window: float, *, max_addresses: int = MAX_ADDRESSES
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def record(self, address: str, now: float) -> None:
        """Remember one failed login from ``address``."""
        if self.limit is None:
            return
        times = self._failures.pop(address, None)  # re-inserted last: most recent
        if times is None:
            times = deque(maxlen=self.limit)
            while len(self._failures) >= self.max_addresses:
                del self._failures[next(iter(self._failures))]
        times.append(now)
        self._failures[address] = times

    def blocked(self, address: str, now: float) -> bool:
        """True while ``address`` has ``limit`` failures younger than ``window``."""
        if self.limit is None:
            return False
        times = self._failures.get(address)
        if times is None:
            return False
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return False
        return len(times) >= self.limit
