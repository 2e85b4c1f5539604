"""``Connection``: aioftp's per-session object, a typed view over :class:`SessionState`.

User code written for aioftp reads and writes session values as attributes or items
(``connection.user``, ``connection["restart_offset"]``, ``"logged" in connection``); here
each of the library's own keys reads and writes a typed field of the session's
:class:`~trio_ftp.state.SessionState` (so the handlers are type-checked), and any other key
is user code's own and kept beside it. A key is *present* when its field holds a value
(``None``, or ``False`` for a flag, means absent); ``del`` puts the field back to its start
value. :meth:`Connection.wait_for` waits (bounded by the caller) until keys are present,
which is how ``ConnectionConditions(..., wait=True)`` waits for a data connection.

Besides the state, a connection carries the session's collaborators: ``response`` (queue a
reply), ``log``, ``path_io``, ``data`` (the data channels), ``control`` (the control
connection and the transfer, see :class:`trio_ftp.interfaces.SessionControl`).

For ``mypy``: attributes are typed; keys of your own go through item access
(``connection["my_key"]``), attribute access to them works at run time but is not typed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import trio

from .aioftp_stream import AioftpDataStream, KeyFutures, WorkerHandle, WorkerLauncher
from .datachannel import ActiveTarget, PassiveListener
from .state import LoginState, Protection, SessionState, TransferProgress, TransferType
from .throttle import Throttle
from .users import User

if TYPE_CHECKING:
    from .datachannel import DataChannels
    from .interfaces import SessionControl
    from .logsafe import SessionLog
    from .pathio import GuardedPathIO
    from .throttle import SpeedLimits, ThrottleRegistry

__all__ = ["Connection"]

T = TypeVar("T")

_ABSENT: dict[str, object] = {}  # field name -> the value that means "not set"
_START = {f.name: f.default for f in dataclasses.fields(SessionState)}
#: aioftp's key names for state fields that are called otherwise here.
_ALIASES = {"passive_server": "data_channel"}


class _StateField(Generic[T]):
    """A :class:`Connection` attribute that is one :class:`SessionState` field."""

    def __init__(self, absent: object = None, field: str | None = None) -> None:
        self._absent = absent
        self._field = field

    def __set_name__(self, owner: type, name: str) -> None:
        self._field = self._field or name
        _ABSENT[self._field] = self._absent

    @overload
    def __get__(self, connection: None, owner: type) -> _StateField[T]: ...
    @overload
    def __get__(self, connection: Connection, owner: type) -> T: ...
    def __get__(self, connection: Connection | None, owner: type) -> T | _StateField[T]:
        if connection is None:
            return self
        value: T = getattr(connection.state, self._field or "")
        return value

    def __set__(self, connection: Connection, value: T) -> None:
        field = self._field or ""
        setattr(connection.state, field, value)
        connection._changed(field)

    def __delete__(self, connection: Connection) -> None:
        field = self._field or ""
        setattr(connection.state, field, _START[field])


class Connection:
    """One session's state for handlers and user code; see the module docstring.

    ``Connection(**values)`` makes a detached one (for tests of your own handlers).
    """

    __slots__ = (
        "_extra",
        "_limits",
        "_response",
        "_throttles",
        "_waiters",
        "_workers",
        "block_size",
        "control",
        "data",
        "idle_timeout",
        "log",
        "path_cache",
        "path_io",
        "path_timeout",
        "socket_timeout",
        "state",
        "wait_future_timeout",
    )

    state: SessionState
    _extra: dict[str, Any] | None  # user code's own keys (None until there is one)
    _waiters: dict[str, trio.Event] | None  # wait_for's events (None until one waits)
    _workers: set[WorkerHandle] | None  # aioftp's extra_workers (None until asked for)
    _response: Callable[[str, str | list[str]], None] | None
    log: SessionLog
    path_io: GuardedPathIO[Any]
    data: DataChannels
    control: SessionControl
    #: Where the throttles come from: ``(registry, user or None)`` (see :meth:`limit_by`).
    _limits: tuple[ThrottleRegistry, SpeedLimits | None] | None
    _throttles: tuple[Throttle, Throttle] | None
    #: ``get_paths``' cache while a command runs (None between commands).
    path_cache: dict[tuple[PurePosixPath, str], tuple[Any, PurePosixPath]] | None
    socket_timeout: float | None
    idle_timeout: float | None
    wait_future_timeout: float | None
    path_timeout: float | None
    block_size: int

    session_id = _StateField[int]()
    client_host = _StateField[str]()
    client_port = _StateField[int]()
    server_host = _StateField[str]()
    server_port = _StateField[int]()
    transport_host = _StateField[str]()
    transport_port = _StateField[int]()
    dialled_host = _StateField[str]()
    dialled_port = _StateField[int]()
    login_name = _StateField[str | None]()
    user = _StateField[User | None]()
    login_failures = _StateField[int](absent=0)
    acquired = _StateField[bool](absent=False)
    current_directory = _StateField[PurePosixPath]()
    transfer_type = _StateField[TransferType]()
    restart_offset = _StateField[int]()
    restart_end = _StateField[int | None]()
    rename_from = _StateField[PurePosixPath | None]()
    mlst_facts = _StateField[tuple[str, ...] | None]()
    hash_algorithm = _StateField[str | None]()
    tls = _StateField[bool]()
    prot = _StateField[Protection]()
    pbsz = _StateField[int | None]()
    epsv_all = _StateField[bool](absent=False)
    data_channel = _StateField[PassiveListener | ActiveTarget | None]()
    #: aioftp's name for :attr:`data_channel` (it holds PORT/EPRT targets too).
    passive_server = _StateField[PassiveListener | ActiveTarget | None](field="data_channel")
    transfer_progress = _StateField[TransferProgress | None]()
    worker_active = _StateField[bool](absent=False)

    def __init__(self, state: SessionState | None = None, **values: object) -> None:
        object.__setattr__(self, "state", state or SessionState())
        object.__setattr__(self, "_extra", None)
        object.__setattr__(self, "_limits", None)
        object.__setattr__(self, "_response", None)
        object.__setattr__(self, "_throttles", None)
        object.__setattr__(self, "_waiters", None)
        object.__setattr__(self, "_workers", None)
        for name, value in values.items():
            self[name] = value

    # derived and compatibility attributes ----------------------------------------------------
    @property
    def logged(self) -> bool:
        """True once a login succeeded (aioftp's key; absent until then)."""
        return self.state.logged_in

    @logged.setter
    def logged(self, value: bool) -> None:
        if value:
            self.state.login = LoginState.LOGGED_IN
        elif self.state.logged_in:
            self.state.logged_out()
        self._changed("logged")

    @logged.deleter
    def logged(self) -> None:
        self.logged = False

    @property
    def response(self) -> Callable[[str, str | list[str]], None]:
        """Queue a reply: ``response(code, text)``, multi-line when ``text`` is a list (the
        session's ``respond`` unless one was set)."""
        return self._response or self.control.respond

    @response.setter
    def response(self, respond: Callable[[str, str | list[str]], None]) -> None:
        object.__setattr__(self, "_response", respond)

    @property
    def data_connection(self) -> AioftpDataStream | None:
        """The data connection a client made (after PASV/EPSV or PORT/EPRT), until a
        transfer takes it: a trio stream with aioftp's ``write``/``read``/``readline``
        (:class:`~trio_ftp.aioftp_stream.AioftpDataStream`). ``del`` forgets it (the taker
        closes it)."""
        stream = self.state.data_connection
        return None if stream is None else AioftpDataStream(stream, self)

    @data_connection.setter
    def data_connection(self, stream: trio.abc.Stream | None) -> None:
        if isinstance(stream, AioftpDataStream):
            stream = stream.stream
        self.state.data_connection = stream
        self._changed("data_connection")

    @data_connection.deleter
    def data_connection(self) -> None:
        self.state.data_connection = None

    @property
    def loop(self) -> WorkerLauncher:
        """aioftp's ``connection.loop``, for ``connection.loop.create_task(worker(...))``:
        the coroutine runs as the session's transfer (see :meth:`start_transfer`)."""
        return WorkerLauncher(self)

    @property
    def future(self) -> KeyFutures:
        """aioftp's ``connection.future.<key>``: ``done()``, ``result()``, ``await`` (the
        await waits for the key without a bound: see :class:`~trio_ftp.aioftp_stream.KeyFuture`)."""
        return KeyFutures(self)

    @property
    def extra_workers(self) -> set[WorkerHandle]:
        """aioftp's set of a session's workers: adding a handle is bookkeeping only (the
        session already supervises the worker and cancels it when it ends)."""
        workers: set[WorkerHandle] | None = self._workers
        if workers is None:
            workers = set()
            object.__setattr__(self, "_workers", workers)
        workers -= {worker for worker in workers if worker.done()}
        return workers

    # speed limits --------------------------------------------------------------------------
    def limit_by(self, registry: ThrottleRegistry, user: SpeedLimits | None) -> None:
        """Transfers are paced by ``registry``'s limits for ``user`` (None: the server's
        only) from now on. The throttles are made when a transfer first asks for them: an
        idle session holds none."""
        object.__setattr__(self, "_limits", (registry, user))
        object.__setattr__(self, "_throttles", None)

    def _throttle_pair(self) -> tuple[Throttle, Throttle]:
        pair = self._throttles
        if pair is None:
            if self._limits is None:  # a detached connection: unlimited
                pair = (Throttle(), Throttle())
            else:
                registry, user = self._limits
                pair = registry.for_connection(user)
            object.__setattr__(self, "_throttles", pair)
        return pair

    @property
    def read_throttle(self) -> Throttle:
        """Paces uploads: every read speed limit that applies to this connection."""
        return self._throttle_pair()[0]

    @read_throttle.setter
    def read_throttle(self, throttle: Throttle) -> None:
        object.__setattr__(self, "_throttles", (throttle, self._throttle_pair()[1]))

    @property
    def write_throttle(self) -> Throttle:
        """Paces downloads: every write speed limit that applies to this connection."""
        return self._throttle_pair()[1]

    @write_throttle.setter
    def write_throttle(self, throttle: Throttle) -> None:
        object.__setattr__(self, "_throttles", (self._throttle_pair()[0], throttle))

    @property
    def logged_in_user(self) -> User:
        """The logged-in user, for handlers that run only after a login (typed, not None).

        Raises:
            trio_ftp.state.InvalidTransition: nobody is logged in.
        """
        return self.state.logged_in_user()

    @property
    def command_connection(self) -> trio.abc.Stream:
        """The control connection's stream now in use (the TLS stream after ``AUTH TLS``)."""
        return self.control.stream

    def start_transfer(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` as the session's one abortable transfer, in the background
        (decorate ``fn`` with :func:`trio_ftp.worker` for the ``426``/``226`` of an abort).

        Raises:
            ReplyError: ``503`` while a transfer runs; ``421`` while the server closes.
        """
        self.control.start_transfer(fn, *args)

    # mapping access ---------------------------------------------------------------------------
    @staticmethod
    def _is_attribute(name: str) -> bool:
        return name in _ATTRIBUTES

    def __getitem__(self, name: str) -> Any:
        if not self._is_attribute(name):
            if self._extra is None:
                raise KeyError(name)
            return self._extra[name]
        try:
            value = getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None
        if _means_absent(_ALIASES.get(name, name), value):
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        if self._is_attribute(name):
            object.__setattr__(self, name, value)
        else:
            if self._extra is None:
                object.__setattr__(self, "_extra", {})
            self._extra[name] = value  # type: ignore[index]
        self._changed(_ALIASES.get(name, name))

    def __delitem__(self, name: str) -> None:
        self[name]  # KeyError if absent
        if self._is_attribute(name):
            object.__delattr__(self, name)
        elif self._extra is not None:
            del self._extra[name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        names = [*sorted(_ATTRIBUTES), *(self._extra or ())]
        return iter([name for name in names if name in self])

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when it is not set."""
        try:
            return self[name]
        except KeyError:
            return default

    def pop(self, name: str, default: Any = None) -> Any:
        """Remove ``name`` and return its value (``default`` when it is not set)."""
        try:
            value = self[name]
        except KeyError:
            return default
        del self[name]
        return value

    async def wait_for(self, *names: str) -> None:
        """Wait until every key in ``names`` is set.

        Timeouts: none here; bound the wait where it is made (``trio.move_on_after``).
        """
        for name in names:
            while name not in self:
                key = _ALIASES.get(name, name)
                if self._waiters is None:
                    object.__setattr__(self, "_waiters", {})
                await self._waiters.setdefault(key, trio.Event()).wait()  # type: ignore[union-attr]

    def _changed(self, field: str) -> None:
        if self._waiters is None:
            return
        waiter = self._waiters.pop(field, None)
        if waiter is not None:
            waiter.set()

    if not TYPE_CHECKING:
        # aioftp's free-form keys, at run time only: mypy sees the typed attributes alone.
        def __getattr__(self, name: str) -> Any:
            extra = self._extra
            if extra is None or name not in extra:
                raise AttributeError(f"{name!r} not in connection")
            return extra[name]

        def __setattr__(self, name: str, value: Any) -> None:
            # __setitem__ inlined for the typed attributes: a session sets them dozens of
            # times (every command sets and clears path_cache).
            if name in _ATTRIBUTES:
                object.__setattr__(self, name, value)
                if self._waiters is not None:
                    self._changed(_ALIASES.get(name, name))
            else:
                self[name] = value

        def __delattr__(self, name: str) -> None:
            try:
                del self[name]
            except KeyError:
                raise AttributeError(f"{name!r} not in connection") from None

    def __repr__(self) -> str:
        return f"Connection({', '.join(sorted(self))})"


#: The names item access maps to attributes (the rest are user code's own keys).
_ATTRIBUTES = frozenset(
    {*_START, *_ALIASES, "logged", "command_connection", "read_throttle", "write_throttle"}
    | {"loop", "extra_workers", "future"}
    | {"response"}
    | (
        {*Connection.__slots__}
        - {"state", "_extra", "_limits", "_response", "_throttles", "_waiters", "_workers"}
    )
)


def _means_absent(field: str, value: object) -> bool:
    """True if ``value`` in ``field`` means "not set" (``None``; ``False``/``0`` for some)."""
    if field == "logged":
        return not value
    absent = _ABSENT.get(field)
    return value is None or (type(value) is type(absent) and value == absent)
