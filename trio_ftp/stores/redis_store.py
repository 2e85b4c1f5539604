"""``RedisStore``: counts shared by every instance that names the same Redis database.

It uses redis-py (the ``redis`` extra: ``pip install trio_ftp[redis]``), its synchronous
client called in worker threads (redis-py's asyncio client runs on asyncio, not trio),
at most ``threads`` at once, each call within ``timeout`` seconds; the client's socket
timeouts are as short and it does not retry, so an abandoned thread ends soon too.

Data (every key starts with the store's ``prefix``):

* a slot key (``conn:server``, ``conn:ip:<address>``, ``conn:user:<login>``) is a sorted
  set whose members are holders and whose scores are the times their leases end. A Lua
  script drops expired members, counts, and adds the holder, atomically. Leases last
  ``lease`` seconds (30 by default) and :meth:`RedisStore.keep_alive`, running while the
  server serves, renews the leases of this store's holders every ``lease / 3`` seconds: a
  crashed instance's slots come free within ``lease`` seconds; a Redis restarted empty
  gets the live holders back within ``lease / 3``.
* ``fail:<address>`` is a sorted set of failure times, trimmed to the newest ``keep`` and
  expiring ``window`` seconds after the last failure.

Times are Redis's clock (``TIME`` inside the scripts), so the instances' clocks need not
agree. One Redis (or a primary with replicas), not Redis Cluster: the renewal script
touches several keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import trio

from .base import DEFAULT_PREFIX, StateStore, new_instance_id
from .threads import run_blocking

if TYPE_CHECKING:
    import redis

__all__ = ["DEFAULT_LEASE", "RedisStore"]

T = TypeVar("T")

#: Seconds a slot holder's lease lasts without renewal.
DEFAULT_LEASE = 30.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS[1] slot key; ARGV limit, holder, lease (ms). 1: held, 0: full.
_ACQUIRE = (
    _NOW
    + """
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""
)

#: KEYS slot keys; ARGV[1] lease (ms), ARGV[1 + i] the holders of KEYS[i], one per line.
_RENEW = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  for holder in string.gmatch(ARGV[i + 1], '[^\\n]+') do
    redis.call('ZADD', key, now + lease, holder)
  end
  redis.call('PEXPIRE', key, lease)
end
return #KEYS
"""
)

#: KEYS[1] failure key; ARGV window (ms), keep, a unique member.
_RECORD_FAILURE = (
    _NOW
    + """
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('PEXPIRE', KEYS[1], window)
return 1
"""
)

#: KEYS[1] failure key; ARGV window (ms).
_COUNT_FAILURES = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
"""
)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisStore(StateStore):
    """A :class:`~trio_ftp.stores.StateStore` in Redis, shared by processes and machines.

    Args:
        url_or_client: ``redis://host:port/db`` (``rediss://`` for TLS; see redis-py's
            ``Redis.from_url``), or a ready ``redis.Redis`` (its timeouts and retries are
            then yours to keep short).
        lease: seconds a slot holder's lease lasts (renewed every ``lease / 3``).
        timeout: seconds each call may take (then ``StoreUnavailable``); also the client's
            socket timeouts when the store makes the client.
        threads: worker threads (and connections) used at once.
        prefix: put in front of every key.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        lease: float = DEFAULT_LEASE,
        timeout: float = 0.5,
        threads: int = 8,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        import redis  # the optional dependency, needed only here
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        super().__init__(prefix=prefix)
        if isinstance(url_or_client, str):
            self.client = redis.Redis.from_url(
                url_or_client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                max_connections=threads,
            )
        else:
            self.client = url_or_client
        self.lease = lease
        self.timeout = timeout
        self._limiter = trio.CapacityLimiter(threads)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._record_failure = self.client.register_script(_RECORD_FAILURE)
        self._count_failures = self.client.register_script(_COUNT_FAILURES)
        self._failure_ids = (f"{new_instance_id()}:{n}" for n in itertools.count())
        #: The holders this store granted and that are not released: the leases to renew.
        self.held: dict[str, set[str]] = {}

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        return await run_blocking(
            call, limiter=self._limiter, seconds=self.timeout, what=f"Redis {what}"
        )

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        full_key, lease = self.prefix + key, _ms(self.lease)
        granted = await self._run(
            "acquire", lambda: self._acquire(keys=[full_key], args=[limit, holder, lease])
        )
        if granted:
            self.held.setdefault(full_key, set()).add(holder)
        return bool(granted)

    async def release(self, key: str, holder: str) -> None:
        full_key = self.prefix + key
        holders = self.held.get(full_key)
        if holders is not None:  # no renewal from now on, whether the removal works or not
            holders.discard(holder)
            if not holders:
                del self.held[full_key]
        await self._run("release", lambda: self.client.zrem(full_key, holder))

    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        full_key, member = f"{self.prefix}fail:{address}", next(self._failure_ids)
        await self._run(
            "record_failure",
            lambda: self._record_failure(keys=[full_key], args=[_ms(window), keep, member]),
        )

    async def failure_count(self, address: str, window: float) -> int:
        full_key = f"{self.prefix}fail:{address}"
        count = await self._run(
            "failure_count", lambda: self._count_failures(keys=[full_key], args=[_ms(window)])
        )
        return int(count)

    async def renew(self) -> None:
        """Renew the leases of every holder this store granted (and put them back if Redis
        lost them)."""
        if not self.held:
            return
        keys = list(self.held)
        args: list[int | str] = [_ms(self.lease)]
        args.extend("\n".join(self.held[key]) for key in keys)
        await self._run("renew", lambda: self._renew(keys=keys, args=args))

    async def keep_alive(self) -> None:
        """Renew the leases every ``lease / 3`` seconds, for as long as the server serves."""
        while True:
            await trio.sleep(self.lease / 3)
            await self.renew()

    async def aclose(self) -> None:
        await self._run("close", self.client.close)
