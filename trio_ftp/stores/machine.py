"""``MachineStore``: counts shared by the processes of one machine, in a SQLite file.

No service to run: the worker processes open the same file (``sqlite3`` of the standard
library, WAL journal). The check-and-add of :meth:`MachineStore.acquire` is one
``BEGIN IMMEDIATE`` transaction, so two processes never both take the last slot.

Each holder row carries the pid of the process that took it: when a worker dies its
supervisor calls :meth:`MachineStore.forget_process`; opening the store, and
:meth:`MachineStore.keep_alive` every ``purge_interval`` seconds, also drop the rows of
pids that no longer exist (a pid reused by an unrelated process keeps its rows until that
process ends: the supervisor's call is the exact way). Failures are stored with the wall
clock (``time.time()``) and their expiry; the table is trimmed per address (``keep``) and
in all (``MAX_FAILURE_ROWS``).

Blocking calls run in worker threads under a limiter of one (one connection, used by one
thread at a time), each within ``timeout`` seconds (then
:class:`~trio_ftp.stores.StoreUnavailable`); SQLite's own busy timeout is a little shorter.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import trio

from .base import DEFAULT_PREFIX, StateStore
from .threads import run_blocking

__all__ = ["MAX_FAILURE_ROWS", "MachineStore"]

T = TypeVar("T")

#: Failure rows kept at most (the oldest go first when :meth:`keep_alive` trims).
MAX_FAILURE_ROWS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (
    key TEXT NOT NULL, holder TEXT NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY (key, holder)
);
CREATE INDEX IF NOT EXISTS holders_by_pid ON holders (pid);
CREATE TABLE IF NOT EXISTS failures (
    address TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_address ON failures (address, at);
CREATE INDEX IF NOT EXISTS failures_by_expiry ON failures (expires);
"""


def _connect(path: str | os.PathLike[str], busy_timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # counts, not money: a power cut may lose the last
    db.executescript(_SCHEMA)
    return db


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (so a check-and-add is atomic)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _purge_dead(db: sqlite3.Connection) -> int:
    pids = [pid for (pid,) in db.execute("SELECT DISTINCT pid FROM holders")]
    dead = [pid for pid in pids if not _alive(pid)]
    for pid in dead:
        db.execute("DELETE FROM holders WHERE pid = ?", (pid,))
    return len(dead)


class MachineStore(StateStore):
    """A :class:`~trio_ftp.stores.StateStore` in a SQLite file shared by the processes of
    one machine.

    Args:
        path: the database file (made if missing); every worker names the same one.
        timeout: seconds each call may take (then ``StoreUnavailable``).
        purge_interval: seconds between the purges :meth:`keep_alive` makes.
        prefix: put in front of every key.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 0.5,
        purge_interval: float = 10.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(prefix=prefix)
        self.path = Path(path)
        self.timeout = timeout
        self.purge_interval = purge_interval
        self.pid = os.getpid()
        self._db = _connect(self.path, busy_timeout=timeout * 0.8)
        self._limiter = trio.CapacityLimiter(1)
        with _immediate(self._db):
            _purge_dead(self._db)

    @staticmethod
    def forget_process(path: str | os.PathLike[str], pid: int) -> int:
        """Drop every slot process ``pid`` held (it died); synchronous, for a supervisor.
        Returns the number of slots freed."""
        db = _connect(path, busy_timeout=5.0)
        try:
            with _immediate(db):
                return db.execute("DELETE FROM holders WHERE pid = ?", (pid,)).rowcount
        finally:
            db.close()

    async def _run(self, what: str, call: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        return await run_blocking(
            lambda: call(db),
            limiter=self._limiter,
            seconds=self.timeout,
            what=f"{self.path}: {what}",
        )

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        full_key, pid = self.prefix + key, self.pid

        def add(db: sqlite3.Connection) -> bool:
            with _immediate(db):
                if db.execute(
                    "SELECT 1 FROM holders WHERE key = ? AND holder = ?", (full_key, holder)
                ).fetchone():
                    return True
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM holders WHERE key = ?", (full_key,)
                ).fetchone()
                if count >= limit:
                    return False
                db.execute("INSERT INTO holders VALUES (?, ?, ?)", (full_key, holder, pid))
                return True

        return await self._run("acquire", add)

    async def release(self, key: str, holder: str) -> None:
        full_key = self.prefix + key

        def remove(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM holders WHERE key = ? AND holder = ?", (full_key, holder))

        await self._run("release", remove)

    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        full_key = f"{self.prefix}fail:{address}"

        def add(db: sqlite3.Connection) -> None:
            now = time.time()
            with _immediate(db):
                db.execute("INSERT INTO failures VALUES (?, ?, ?)", (full_key, now, now + window))
                db.execute(
                    "DELETE FROM failures WHERE address = ? AND at NOT IN "
                    "(SELECT at FROM failures WHERE address = ? ORDER BY at DESC LIMIT ?)",
                    (full_key, full_key, keep),
                )

        await self._run("record_failure", add)

    async def failure_count(self, address: str, window: float) -> int:
        full_key = f"{self.prefix}fail:{address}"

        def count(db: sqlite3.Connection) -> int:
            since = time.time() - window
            row = db.execute(
                "SELECT COUNT(*) FROM failures WHERE address = ? AND at > ?", (full_key, since)
            ).fetchone()
            return int(row[0])

        return await self._run("failure_count", count)

    async def keep_alive(self) -> None:
        """Every ``purge_interval`` seconds: drop the slots of dead processes and expired
        failures, and trim the failures to ``MAX_FAILURE_ROWS``."""

        def purge(db: sqlite3.Connection) -> None:
            with _immediate(db):
                _purge_dead(db)
                db.execute("DELETE FROM failures WHERE expires < ?", (time.time(),))
                db.execute(
                    "DELETE FROM failures WHERE rowid IN (SELECT rowid FROM failures "
                    "ORDER BY at DESC LIMIT -1 OFFSET ?)",
                    (MAX_FAILURE_ROWS,),
                )

        while True:
            await trio.sleep(self.purge_interval)
            await self._run("purge", purge)

    async def aclose(self) -> None:
        await self._run("close", lambda db: db.close())
