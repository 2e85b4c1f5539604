"""Who may log in, and what they may touch: aioftp's user model, unchanged in meaning."""

from __future__ import annotations

import abc
import enum
import hmac
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .errors import PathIsNotAbsolute
from .throttle import SpeedLimited
from .validation import check_positive_int

__all__ = [
    "ANONYMOUS_LOGINS",
    "AbstractUserManager",
    "AvailableConnections",
    "MemoryUserManager",
    "Permission",
    "User",
]

#: Logins that select the anonymous user (``User(login=None)``), as clients send them.
ANONYMOUS_LOGINS = frozenset({"anonymous", "ftp"})


class Permission:
    """Read/write rights on a virtual path and everything below it.

    Args:
        path: virtual (client-side) path the permission applies to.
        readable: the user may read (RETR, LIST, SIZE...).
        writable: the user may change things (STOR, DELE, MKD...).
    """

    def __init__(
        self, path: str | PurePosixPath = "/", *, readable: bool = True, writable: bool = True
    ) -> None:
        self.path = PurePosixPath(path)
        self.readable = readable
        self.writable = writable

    def is_parent(self, other: PurePosixPath) -> bool:
        """True if ``other`` is this permission's path or below it."""
        return other == self.path or self.path in other.parents

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, readable={self.readable!r}, "
            f"writable={self.writable!r})"
        )


class User(SpeedLimited):
    """An account: credentials, where its files live, and its rights.

    Args:
        login: the login name; ``None`` makes the anonymous user, selected by the logins in
            :data:`ANONYMOUS_LOGINS` with any password.
        password: ``None`` lets the user in without a password.
        base_path: the real directory that is the user's ``/``; nothing outside it is reachable.
        home_path: the virtual directory a session starts in (must be absolute).
        permissions: path permissions; the nearest parent of a path applies. Default: one
            read/write permission on ``/``.
        maximum_connections: how many sessions of this user may be logged in at once.
        read_speed_limit, write_speed_limit: bytes per second shared by all this user's
            sessions, uploads (read) and downloads (write); ``None``: unlimited.
        read_speed_limit_per_connection, write_speed_limit_per_connection: the same for each
            of this user's sessions. Changing the attributes affects running transfers.

    Raises:
        PathIsNotAbsolute: ``home_path`` is relative (a ``ValueError``).
    """

    def __init__(
        self,
        login: str | None = None,
        password: str | None = None,
        *,
        base_path: str | Path = Path("."),
        home_path: str | PurePosixPath = PurePosixPath("/"),
        permissions: Sequence[Permission] | None = None,
        maximum_connections: int | None = None,
        read_speed_limit: float | None = None,
        write_speed_limit: float | None = None,
        read_speed_limit_per_connection: float | None = None,
        write_speed_limit_per_connection: float | None = None,
    ) -> None:
        check_positive_int("maximum_connections", maximum_connections)
        self.login = login
        self.password = password
        self.base_path = Path(base_path)
        self.home_path = PurePosixPath(home_path)
        if not self.home_path.is_absolute():
            raise PathIsNotAbsolute(home_path)
        self.permissions: Sequence[Permission] = list(permissions or [Permission()])
        self.maximum_connections = maximum_connections
        super().__init__(
            read_speed_limit,
            write_speed_limit,
            read_speed_limit_per_connection,
            write_speed_limit_per_connection,
        )

    async def get_permissions(self, path: str | PurePosixPath) -> Permission:
        """Return the permission of the nearest parent of ``path`` (or ``path`` itself).

        A path no permission covers gets the default ``Permission()`` (read/write), as in
        aioftp; list a ``Permission("/", writable=False)`` to make a user read-only.
        """
        path = PurePosixPath(path)
        covering = [p for p in self.permissions if p.is_parent(path)]
        return max(covering, key=lambda p: len(p.path.parts), default=Permission())

    def children_permission(self, directory: PurePosixPath) -> Permission | None:
        """The permission every child of ``directory`` has, or None if they may differ (a
        rule names a path below ``directory``, or ``get_permissions`` is overridden).

        Lets a listing of many files ask once instead of once per entry.
        """
        if type(self).get_permissions is not User.get_permissions:
            return None
        if any(directory in permission.path.parents for permission in self.permissions):
            return None
        covering = [p for p in self.permissions if p.is_parent(directory)]
        return max(covering, key=lambda p: len(p.path.parts), default=Permission())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.login!r}, base_path={self.base_path!r}, "
            f"home_path={self.home_path!r}, permissions={self.permissions!r}, "
            f"maximum_connections={self.maximum_connections!r})"
        )


class AvailableConnections:
    """A counter shaped like a semaphore that never blocks; ``None`` means unlimited.

    Raises ``ValueError`` when acquired past zero or released past its maximum: either is a
    bookkeeping bug that must be loud.
    """

    def __init__(self, value: int | None = None) -> None:
        self.value = self.maximum_value = value

    def locked(self) -> bool:
        """True if one more :meth:`acquire` would cross the limit."""
        return self.value == 0

    def acquire(self) -> None:
        """Take one slot."""
        if self.value is not None:
            if self.value <= 0:
                raise ValueError("Too many acquires")
            self.value -= 1

    def release(self) -> None:
        """Give one slot back."""
        if self.value is not None and self.maximum_value is not None:
            if self.value >= self.maximum_value:
                raise ValueError("Too many releases")
            self.value += 1


class GetUserResponse(enum.Enum):
    """What :meth:`AbstractUserManager.get_user` decided about a login."""

    OK = enum.auto()
    PASSWORD_REQUIRED = enum.auto()
    ERROR = enum.auto()


_Response = GetUserResponse


class AbstractUserManager(abc.ABC):
    """Where users come from; subclass it to authenticate against anything.

    Args:
        timeout: seconds each call may take; the session enforces it (a slow manager costs
            only the session that waits on it, which is answered ``421``).
    """

    GetUserResponse = GetUserResponse

    def __init__(self, *, timeout: float | None = None) -> None:
        self.timeout = timeout

    @abc.abstractmethod
    async def get_user(self, login: str) -> tuple[_Response, User | None, str]:
        """Look up ``login`` for ``USER``: ``(response, user or None, message for the client)``.

        ``OK``: logged in without a password; ``PASSWORD_REQUIRED``: ask for one. Whatever
        the answer short of ``OK``, the client sees the same ``331`` and, at ``PASS``, the
        same failure, so logins cannot be told apart; ``ERROR`` with the user means it may
        not log in now (e.g. too many sessions): ``421`` and the session is closed.
        """

    @abc.abstractmethod
    async def authenticate(self, user: User, password: str) -> bool:
        """Check ``password`` for ``user`` (``PASS``)."""

    async def notify_login(self, user: User) -> bool:
        """Called when a session has proven it is ``user`` (``OK`` from :meth:`get_user`,
        or :meth:`authenticate` said yes); False refuses the login (``421``, e.g. the user
        has no free connection slot). Slots are taken here, not at ``USER``: a ``USER``
        alone must neither lock the real user out nor tell anyone the name exists."""
        return True

    async def notify_logout(self, user: User) -> None:  # noqa: B027 - optional hook
        """Called once when a session that :meth:`notify_login` let in ends, logs out or
        selects another user."""


class MemoryUserManager(AbstractUserManager):
    """Users kept in a list; enforces ``User.maximum_connections``.

    Args:
        users: the accounts; ``None`` or empty means one anonymous read/write user.
    """

    def __init__(self, users: Sequence[User] | None, *, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.users: list[User] = list(users or [User()])
        self.available_connections: dict[User, AvailableConnections] = {
            user: AvailableConnections(user.maximum_connections) for user in self.users
        }

    def replace_users(self, users: Sequence[User]) -> None:
        """Serve ``users`` from now on (a configuration reload); sessions logged in keep
        their user, and its connection count, until they end."""
        self.users = list(users or [User()])
        for user in self.users:
            self.available_connections.setdefault(
                user, AvailableConnections(user.maximum_connections)
            )

    def _find(self, login: str) -> User | None:
        for user in self.users:
            if user.login is not None and user.login == login:
                return user
        if login.lower() in ANONYMOUS_LOGINS:
            for user in self.users:
                if user.login is None:
                    return user
        return None

    async def get_user(self, login: str) -> tuple[_Response, User | None, str]:
        user = self._find(login)
        if user is None:
            # Same answer as for a real user, so logins cannot be enumerated.
            return GetUserResponse.PASSWORD_REQUIRED, None, "password required"
        if user.login is None:
            return GetUserResponse.PASSWORD_REQUIRED, user, "anonymous login ok, send any password"
        if user.password is None:
            return GetUserResponse.OK, user, "login without password"
        return GetUserResponse.PASSWORD_REQUIRED, user, "password required"

    async def authenticate(self, user: User, password: str) -> bool:
        if user.login is None or user.password is None:
            return True
        # Constant time, on bytes: compare_digest refuses non-ASCII str.
        return hmac.compare_digest(
            user.password.encode("utf-8", "surrogateescape"),
            password.encode("utf-8", "surrogateescape"),
        )

    async def notify_login(self, user: User) -> bool:
        slots = self.available_connections.get(user)
        if slots is None:
            return True
        if slots.locked():
            return False
        slots.acquire()
        return True

    async def notify_logout(self, user: User) -> None:
        if user in self.available_connections:
            self.available_connections[user].release()
