"""Users from a SQLite database, with scrypt-hashed passwords: a custom user manager.

Shows how to implement :class:`trio_ftp.AbstractUserManager`: ``get_user`` for ``USER``,
``authenticate`` for ``PASS``. Database calls and the (deliberately slow) scrypt hash run in
worker threads (``trio.to_thread.run_sync``), never on the event loop. Unknown logins get
the same answer, and the same scrypt work, as known ones, so logins cannot be enumerated.

    python examples/sqlite_user_manager.py users.db add alice /srv/ftp/alice   # asks a password
    python examples/sqlite_user_manager.py users.db                           # serve on :2121
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import secrets
import sqlite3
import sys
from pathlib import Path

import trio

import trio_ftp
from trio_ftp import GetUserResponse, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    login     TEXT PRIMARY KEY,
    salt      BLOB NOT NULL,
    hash      BLOB NOT NULL,
    base_path TEXT NOT NULL,
    writable  INTEGER NOT NULL DEFAULT 1
)
"""

# scrypt cost (n=2**14, r=8: ~16 MiB and some tens of milliseconds per check).
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str, salt: bytes) -> bytes:
    """scrypt of ``password`` with ``salt`` (slow on purpose: call it in a thread)."""
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)


def _connect(database: str | Path) -> contextlib.closing[sqlite3.Connection]:
    # One short-lived connection per call: sqlite3 connections belong to one thread.
    return contextlib.closing(sqlite3.connect(database))


def add_user(
    database: str | Path, login: str, password: str, base_path: str | Path, *, writable: bool = True
) -> None:
    """Create (or replace) ``login`` with a fresh random salt. Blocking: fine in a script,
    ``await trio.to_thread.run_sync(add_user, ...)`` from trio."""
    salt = secrets.token_bytes(16)
    with _connect(database) as db, db:  # the inner ``db`` commits the transaction
        db.execute(SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO users (login, salt, hash, base_path, writable)"
            " VALUES (?, ?, ?, ?, ?)",
            (login, salt, hash_password(password, salt), str(base_path), int(writable)),
        )


class SQLiteUser(User):
    """A user that remembers its salt and hash (``password`` stays None)."""

    def __init__(self, login: str, salt: bytes, digest: bytes, **kwargs: object) -> None:
        super().__init__(login, **kwargs)  # type: ignore[arg-type]
        self.salt = salt
        self.digest = digest


class SQLiteUserManager(trio_ftp.AbstractUserManager):
    """Looks users up in ``database`` (made by :func:`add_user`) on every login."""

    def __init__(self, database: str | Path, *, timeout: float | None = 10) -> None:
        super().__init__(timeout=timeout)
        self.database = database
        with _connect(database) as db, db:
            db.execute(SCHEMA)
        # What an unknown login is checked against: it costs the same scrypt and never matches.
        self._decoy_salt = secrets.token_bytes(16)

    def _lookup(self, login: str) -> tuple[bytes, bytes, str, int] | None:
        with _connect(self.database) as db:
            row = db.execute(
                "SELECT salt, hash, base_path, writable FROM users WHERE login = ?", (login,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), row[2], row[3])

    async def get_user(self, login: str) -> tuple[GetUserResponse, User | None, str]:
        row = await trio.to_thread.run_sync(self._lookup, login)
        if row is None:
            # A decoy: same reply, and authenticate() does the same work before it says no.
            user = SQLiteUser(login, self._decoy_salt, b"", base_path=Path("/nonexistent"))
        else:
            salt, digest, base_path, writable = row
            permissions = [trio_ftp.Permission("/", writable=bool(writable))]
            user = SQLiteUser(login, salt, digest, base_path=base_path, permissions=permissions)
        return GetUserResponse.PASSWORD_REQUIRED, user, "password required"

    async def authenticate(self, user: User, password: str) -> bool:
        assert isinstance(user, SQLiteUser)
        computed = await trio.to_thread.run_sync(hash_password, password, user.salt)
        # compare_digest: no early exit that would leak how much of the hash matched.
        return hmac.compare_digest(computed, user.digest)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[2] == "add":
        database, _, login, base_path = sys.argv[1:]
        add_user(database, login, getpass.getpass(f"password for {login}: "), base_path)
        print(f"added {login!r} to {database}")
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    server = trio_ftp.Server(SQLiteUserManager(sys.argv[1]))
    print(f"users from {sys.argv[1]}, serving on ftp://127.0.0.1:2121/")
    trio.run(server.run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
