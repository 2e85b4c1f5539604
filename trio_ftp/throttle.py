"""Speed limits: a token bucket on trio's clock, chains of buckets, and the server's registry.

Theory of operation
-------------------
A :class:`TokenBucket` holds a balance of bytes that grows at ``rate`` bytes per second (on
``trio.current_time()``, so ``MockClock`` drives it) up to ``burst``. :meth:`TokenBucket.acquire`
uses a *debt* model: it takes ``amount`` at once, which may push the balance below zero, then
sleeps until the balance is back to zero. So a block larger than the balance (a 64 KiB block at
10 kB/s) needs no special case, the bytes let through by any time ``t`` never exceed
``burst + rate * t``, and an idle bucket saves up at most ``burst`` (one block): no busy
waiting, no per-byte work, one wake-up per block (plus one every ``poll_interval`` of a long
wait). Acquirers queue on a ``trio.Lock``, which trio hands over in FIFO order, and the holder
keeps it while it pays its debt: concurrent transfers on one bucket take turns block by block,
so each gets an equal share and none starves.

The rate can change at any time. Setting :attr:`TokenBucket.rate` settles the balance at the old
rate and wakes the waiter at once; a bucket built with ``rate_source`` (a callable, e.g. reading
``server.write_speed_limit``) re-reads it at each acquire and at least every ``poll_interval``
while it waits, so attribute changes reach running transfers within that bound.

A :class:`Throttle` is the chain of buckets a transfer must pass, acquired one after the other;
:class:`ThrottleRegistry` (one per server) builds the ``(read, write)`` pair of throttles for a
connection from the four levels: server, server-per-connection, user, user-per-connection.
"read" is data the server receives (uploads), "write" data it sends (downloads).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Protocol

import trio

__all__ = [
    "SpeedLimited",
    "SpeedLimits",
    "Throttle",
    "ThrottleRegistry",
    "TokenBucket",
    "check_rate",
]

#: A remaining wait shorter than this (seconds) counts as paid: float rounding, not debt.
_EPSILON = 1e-9


def check_rate(name: str, value: object) -> float | None:
    """``value`` if it is ``None`` or a positive finite number, else ``ValueError`` naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{name} must be a positive number of bytes per second or None, got {value!r}"
        )
    if not (0 < value < math.inf):
        raise ValueError(
            f"{name} must be a positive number of bytes per second or None, got {value!r}"
        )
    return value


class TokenBucket:
    """A byte-rate limit on trio's clock, shared fairly by every task that acquires from it.

    Args:
        rate: bytes per second; ``None`` means unlimited.
        burst: the most bytes an idle bucket saves up (use the transfer block size).
        rate_source: if given, a callable whose result (bytes per second or ``None``)
            replaces ``rate`` at each acquire and at least every ``poll_interval`` while a
            task waits; it is how run-time changes of ``Server``/``User`` attributes apply.
        poll_interval: the longest a waiting task sleeps before it looks at the rate again.

    Raises:
        ValueError: ``rate`` (or a value from ``rate_source``) is not a positive finite number
            or ``None``; ``burst`` is not a positive integer; ``poll_interval`` not positive.

    Attributes:
        sleeps: how many times acquirers have gone to sleep (for tests and statistics).
    """

    __slots__ = (
        "_burst",
        "_changed",
        "_lock",
        "_rate",
        "_source",
        "_stamp",
        "_tokens",
        "poll_interval",
        "sleeps",
    )

    def __init__(
        self,
        rate: float | None,
        *,
        burst: int,
        rate_source: Callable[[], float | None] | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a positive integer, got {burst!r}")
        if not (0 < poll_interval < math.inf):
            raise ValueError(f"poll_interval must be a positive number, got {poll_interval!r}")
        self._rate = check_rate("rate", rate)
        self._burst = burst
        self._source = rate_source
        self.poll_interval = poll_interval
        self._tokens = float(burst)
        self._stamp: float | None = None  # set on first use, inside trio.run
        # Made on first limited use: most buckets (one per connection per limit level)
        # never limit anything, and idle connections should cost next to nothing.
        self._lock: trio.Lock | None = None
        self._changed: trio.Event | None = None
        self.sleeps = 0

    @property
    def rate(self) -> float | None:
        """Bytes per second, or ``None`` for unlimited; settable, effective at once."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        value = check_rate("rate", value)
        if value == self._rate:
            return
        if self._stamp is not None:
            self._settle()  # bytes earned so far were earned at the old rate
        self._rate = value
        if self._changed is not None:
            self._changed.set()  # wake the waiter: its wait is computed anew
            self._changed = None

    @property
    def burst(self) -> int:
        """The most bytes an idle bucket lets through at once."""
        return self._burst

    def _refresh(self) -> float | None:
        """Take the rate from ``rate_source`` (if any); return the rate in force."""
        if self._source is not None:
            self.rate = self._source()
        return self._rate

    def _settle(self) -> None:
        """Bring the balance up to now."""
        now = trio.current_time()
        if self._stamp is None or self._rate is None:
            self._tokens = float(self._burst)
        else:
            earned = (now - self._stamp) * self._rate
            self._tokens = min(float(self._burst), self._tokens + earned)
        self._stamp = now

    def refund(self, amount: int) -> None:
        """Give back ``amount`` acquired bytes that were not moved (a cancelled transfer)."""
        if self._stamp is not None:
            self._settle()
        self._tokens = min(float(self._burst), self._tokens + amount)

    async def acquire(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass; then move them at once.

        Cancellation: a cancellation point (a schedule point only when it waits: without a
        limit the send or read it paces is one); cancelled while waiting, the bytes are
        given back.
        """
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        if amount == 0 or self._refresh() is None:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        await self._acquire_limited(amount)

    async def _acquire_limited(self, amount: int) -> None:
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:  # FIFO: trio hands a released Lock to its oldest waiter
            self._settle()
            self._tokens -= amount
            try:
                while True:
                    rate = self._refresh()
                    self._settle()
                    if rate is None or self._tokens >= 0:
                        return
                    wait = -self._tokens / rate
                    if wait < _EPSILON:
                        return
                    self.sleeps += 1
                    if self._changed is None:
                        self._changed = trio.Event()
                    began = trio.current_time()
                    with trio.move_on_after(min(wait, self.poll_interval)):
                        await self._changed.wait()
                    _waited[0] += trio.current_time() - began
            except BaseException:
                self.refund(amount)
                raise


#: Seconds transfers of this process have waited for a speed limit (metrics read it).
_waited = [0.0]


def waited_seconds() -> float:
    """Seconds transfers of this process have waited for a speed limit so far."""
    return _waited[0]


class Throttle:
    """A chain of buckets that must all let a block through; no buckets means unlimited.

    :meth:`acquire` takes from the buckets one after the other, in the order given, which
    should be narrowest first (connection, then user, then server). Why that order:

    - No deadlock, whatever the order: a task holds a bucket's lock only while it pays that
      bucket's own debt, never while it waits for another bucket, so no task ever holds one
      bucket while waiting for a second (no hold-and-wait, hence no cycle).
    - Fairness and accuracy: a task slowed by its own (private) limit pays it before it joins
      the queue of a shared bucket, so it never holds a place in a shared FIFO queue for a wait
      that is its own, and the shared bucket is charged right before the bytes move.

    Each bucket on its own lets through at most ``burst + rate * t``, so every level holds at
    once and a transfer runs at the speed of its tightest limit.
    """

    __slots__ = ("_buckets", "_levels")

    def __init__(self, *buckets: TokenBucket | Callable[[], TokenBucket]) -> None:
        # A level may be given as a factory: a connection's own buckets are made at its
        # first transfer, so an idle session holds none.
        self._levels = buckets
        self._buckets: tuple[TokenBucket, ...] | None = None

    @property
    def buckets(self) -> tuple[TokenBucket, ...]:
        """The buckets, narrowest first (made now if they were given as factories)."""
        if self._buckets is None:
            self._buckets = tuple(
                level if isinstance(level, TokenBucket) else level() for level in self._levels
            )
            self._levels = ()
        return self._buckets

    @property
    def rate(self) -> float | None:
        """The tightest limit in force (bytes per second), or ``None`` if none is."""
        rates = [bucket.rate for bucket in self.buckets if bucket.rate is not None]
        return min(rates) if rates else None

    def current_rate(self) -> float | None:
        """Like :attr:`rate`, after reading every bucket's limit from its source: what
        decides, before each chunk, whether a transfer may bypass the throttle."""
        rates = [rate for bucket in self.buckets if (rate := bucket._refresh()) is not None]
        return min(rates) if rates else None

    async def acquire(self, amount: int) -> None:
        """Wait until every bucket lets ``amount`` bytes through.

        Cancellation: a checkpoint; cancelled, the bytes taken from earlier buckets are
        given back.
        """
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        taken: list[TokenBucket] = []
        try:
            for bucket in self.buckets:
                if amount and bucket._refresh() is not None:
                    await bucket._acquire_limited(amount)
                    taken.append(bucket)
        except BaseException:
            for bucket in taken:
                bucket.refund(amount)
            raise
        if not taken:
            await trio.lowlevel.checkpoint_if_cancelled()  # as Throttle.acquire


class SpeedLimits(Protocol):
    """What the registry reads on a server and on a user (``Server`` and ``User`` have them).

    Each is bytes per second or ``None`` (unlimited), read again while transfers run.
    """

    @property
    def read_speed_limit(self) -> float | None: ...
    @property
    def write_speed_limit(self) -> float | None: ...
    @property
    def read_speed_limit_per_connection(self) -> float | None: ...
    @property
    def write_speed_limit_per_connection(self) -> float | None: ...


class _AttributeRate:
    """A bucket's ``rate_source``: the limit attribute ``name`` of ``owner``, checked."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: SpeedLimits, name: str) -> None:
        self.owner = owner
        self.name = name

    def __call__(self) -> float | None:
        value: float | None = getattr(self.owner, self.name)
        return check_rate(self.name, value)


def _source(owner: SpeedLimits, name: str) -> Callable[[], float | None]:
    return _AttributeRate(owner, name)


class SpeedLimited:
    """The four speed-limit attributes that ``Server`` and ``User`` both have, validated.

    Plain attributes on purpose: assigning one takes effect on running transfers.
    """

    def __init__(
        self,
        read_speed_limit: float | None,
        write_speed_limit: float | None,
        read_speed_limit_per_connection: float | None,
        write_speed_limit_per_connection: float | None,
    ) -> None:
        self.read_speed_limit = check_rate("read_speed_limit", read_speed_limit)
        self.write_speed_limit = check_rate("write_speed_limit", write_speed_limit)
        self.read_speed_limit_per_connection = check_rate(
            "read_speed_limit_per_connection", read_speed_limit_per_connection
        )
        self.write_speed_limit_per_connection = check_rate(
            "write_speed_limit_per_connection", write_speed_limit_per_connection
        )


class _LazyBucket:
    """Makes one per-connection bucket when a transfer first needs it (small: idle
    sessions hold only these)."""

    __slots__ = ("name", "owner", "registry")

    def __init__(self, registry: ThrottleRegistry, owner: SpeedLimits, name: str) -> None:
        self.registry = registry
        self.owner = owner
        self.name = name

    def __call__(self) -> TokenBucket:
        return self.registry._bucket(self.owner, self.name)


class ThrottleRegistry:
    """The server's buckets, and the ``(read, write)`` throttles of each connection.

    Server-wide buckets are made here; a user's shared buckets on the first connection of that
    user (keyed by the user object, held weakly: user objects must be hashable and
    weak-referenceable, as :class:`~trio_ftp.User` is); per-connection buckets at each
    :meth:`for_connection`. Every bucket reads its limit from the attribute it stands for,
    so changing ``server.write_speed_limit`` or ``user.read_speed_limit_per_connection``
    applies to running transfers within ``poll_interval``.

    Args:
        server: the object with the server-level limits (the ``Server``).
        burst: bytes an idle bucket saves up; the server's ``block_size``.
        poll_interval: the longest a waiting transfer goes without looking at the limits.
    """

    def __init__(self, server: SpeedLimits, *, burst: int, poll_interval: float = 0.25) -> None:
        self._server = server
        self._burst = burst
        self._poll_interval = poll_interval
        self._server_buckets = self._pair(server, "")
        self._user_buckets: weakref.WeakKeyDictionary[
            SpeedLimits, tuple[TokenBucket, TokenBucket]
        ] = weakref.WeakKeyDictionary()

    def _pair(self, owner: SpeedLimits, suffix: str) -> tuple[TokenBucket, TokenBucket]:
        return (
            self._bucket(owner, f"read_speed_limit{suffix}"),
            self._bucket(owner, f"write_speed_limit{suffix}"),
        )

    def _lazy_pair(
        self, owner: SpeedLimits
    ) -> tuple[Callable[[], TokenBucket], Callable[[], TokenBucket]]:
        """Factories of ``owner``'s per-connection ``(read, write)`` buckets."""
        return (
            _LazyBucket(self, owner, "read_speed_limit_per_connection"),
            _LazyBucket(self, owner, "write_speed_limit_per_connection"),
        )

    def _bucket(self, owner: SpeedLimits, name: str) -> TokenBucket:
        source = _source(owner, name)
        return TokenBucket(
            source(), burst=self._burst, rate_source=source, poll_interval=self._poll_interval
        )

    def for_connection(self, user: SpeedLimits | None) -> tuple[Throttle, Throttle]:
        """New ``(read, write)`` throttles for one connection of ``user``.

        Call it once per logged-in session (at login; again after ``REIN`` and a new login)
        and keep the pair for every transfer of the session: each call makes fresh
        per-connection buckets. ``user=None`` gives the server-level limits only.
        """
        levels: list[tuple[TokenBucket | Callable[[], TokenBucket], ...]]
        levels = [self._lazy_pair(self._server)]
        if user is not None:
            shared = self._user_buckets.get(user)
            if shared is None:
                shared = self._user_buckets[user] = self._pair(user, "")
            levels.insert(0, self._lazy_pair(user))
            levels.append(shared)
        levels.append(self._server_buckets)
        # narrowest first: user-per-connection, server-per-connection, user, server
        return (
            Throttle(*(read for read, _ in levels)),
            Throttle(*(write for _, write in levels)),
        )
