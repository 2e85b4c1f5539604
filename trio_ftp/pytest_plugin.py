"""pytest fixtures that give a test a running trio_ftp server, and the servers behind them.

Installing trio_ftp makes these fixtures available in every pytest run; none is used unless
a test asks for it. Every fixture is function-scoped and closes its server at teardown.
The ``pytest11`` entry point registers the small top-level module ``_trio_ftp_pytestplugin``,
which defines the fixtures without importing trio_ftp (so ``pytest --cov`` measures trio_ftp
from its first line); each fixture imports this module when a test uses it. Listing this
module in ``pytest_plugins`` (e.g. with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) gives the same
fixtures.

Trio fixtures, for pytest-trio users: the test must be a trio test, through
``trio_mode = true`` or ``@pytest.mark.trio``. Without pytest-trio, or in a test that is not
trio, using one fails at setup with a message naming the threaded fixtures below::

    async def test_upload(ftp_server):             # 127.0.0.1:<free port>, files on disk
        ftp = ftplib.FTP()
        await trio.to_thread.run_sync(ftp.connect, ftp_server.host, ftp_server.port)
        await trio.to_thread.run_sync(ftp.login, ftp_server.login, ftp_server.password)
        ...                                         # then look in ftp_server.root (a Path)

    async def test_tls(ftps_server):                # explicit FTPS (AUTH TLS), trustme CA
        ftp = ftplib.FTP_TLS(context=ftps_server.client_context)
        ...                                         # or: curl --cacert ftps_server.ca_file

    async def test_seeded(ftp_server_factory):      # any Server keyword, in-memory files...
        server = await ftp_server_factory(files={"/a.txt": b"hi"}, idle_timeout=5)
        server = await ftp_server_factory(users=my_user_manager, login="bob", password="pw")

Synchronous fixtures, for any other test suite (plain pytest, unittest-style, asyncio): the
server runs in a background thread with its own ``trio.run``, starts in milliseconds and the
thread is joined at teardown::

    def test_download(ftp_server_thread):
        (ftp_server_thread.root / "a.txt").write_bytes(b"hi")
        with ftplib.FTP() as ftp:
            ftp.connect(ftp_server_thread.host, ftp_server_thread.port)
            ftp.login(ftp_server_thread.login, ftp_server_thread.password)

    def test_tls_sync(ftps_server_thread):          # same attributes as ftps_server
        ftp = ftplib.FTP_TLS(context=ftps_server_thread.client_context)

    def test_many(ftp_server_thread_factory):       # ThreadedFTPServer's arguments
        server = ftp_server_thread_factory(files={"/a.txt": b"hi"})

Without pytest (``unittest``), use :class:`ThreadedFTPServer` directly::

    class MyTest(unittest.TestCase):
        def setUp(self):
            self.ftp_server = ThreadedFTPServer().start()
            self.addCleanup(self.ftp_server.stop)

    with ThreadedFTPServer(files={"/a.txt": b"hi"}, tls=True) as server:
        urllib.request.urlopen(server.url + "a.txt")

Every server object has ``host``, ``port``, ``root`` (a :class:`pathlib.Path`), ``login``,
``password``, ``url`` (``ftp://login:password@host:port/``), ``server`` (the
:class:`trio_ftp.Server`), and for TLS servers ``ca_file`` (a PEM file for curl's
``--cacert`` or lftp's ``ssl:ca-file``) and ``client_context`` (an :class:`ssl.SSLContext`
that trusts the server). The default users are ``login``/``password`` (read/write) and
anonymous (read-only), both rooted at ``root``. trustme is imported only when a TLS server is
made, so the plugin itself needs neither trustme nor pytest-trio.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import trio

# The fixtures, so that ``pytest_plugins = ["trio_ftp.pytest_plugin"]`` registers them too.
from _trio_ftp_pytestplugin import (
    _trio_ftp_trio_test,  # noqa: F401 (the trio fixtures request it)
    ftp_server,
    ftp_server_factory,
    ftp_server_thread,
    ftp_server_thread_factory,
    ftps_server,
    ftps_server_thread,
)

from .pathio import AbstractPathIO, MemoryPathIO
from .server import Server
from .users import AbstractUserManager, Permission, User

__all__ = [
    "DEFAULT_LOGIN",
    "DEFAULT_PASSWORD",
    "FTPServerFactory",
    "RunningFTPServer",
    "ThreadedFTPServer",
    "ftp_server",
    "ftp_server_factory",
    "ftp_server_thread",
    "ftp_server_thread_factory",
    "ftps_server",
    "ftps_server_thread",
]

DEFAULT_LOGIN = "user"
DEFAULT_PASSWORD = "secret"
#: Name of the background threads of :class:`ThreadedFTPServer`.
THREAD_NAME = "trio_ftp-test-server"
#: Seconds a server gets to start, and to stop, before the fixture fails.
TIMEOUT = 10.0

TLSMode = Literal["explicit", "implicit"] | bool
Users = Sequence[User] | AbstractUserManager | None
Files = Mapping[str, bytes | None]


@dataclass
class RunningFTPServer:
    """A running server and everything a client needs to reach it."""

    server: Server
    host: str
    port: int
    #: Directory served to the default users (``Path("/")``, the tree's root, in memory).
    root: Path
    login: str
    password: str
    #: CA certificate (PEM) the server's certificate is signed with; None without TLS.
    ca_file: Path | None = None
    #: Client context trusting ``ca_file``; None without TLS.
    client_context: ssl.SSLContext | None = None
    #: A :class:`MemoryPathIO` on the server's in-memory tree (``files=``); None on disk.
    memory: MemoryPathIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``ftp://login:password@host:port/`` (explicit FTPS also uses ``ftp://``)."""
        return f"ftp://{self.login}:{self.password}@{self.host}:{self.port}/"


class FTPServerFactory(Protocol):
    """The type of the ``ftp_server_factory`` fixture."""

    def __call__(
        self,
        *,
        users: Users = None,
        files: Files | None = None,
        root: Path | None = None,
        login: str = DEFAULT_LOGIN,
        password: str = DEFAULT_PASSWORD,
        tls: TLSMode = False,
        **server_kwargs: Any,
    ) -> Awaitable[RunningFTPServer]: ...


@dataclass
class _Prepared:
    server: Server
    root: Path
    login: str
    password: str
    ca_file: Path | None
    client_context: ssl.SSLContext | None
    memory: MemoryPathIO | None

    def running(self, host: str, port: int) -> RunningFTPServer:
        return RunningFTPServer(
            self.server,
            host,
            port,
            self.root,
            self.login,
            self.password,
            self.ca_file,
            self.client_context,
            self.memory,
        )


def _memory_factory(
    base: type[MemoryPathIO], files: Files
) -> tuple[type[MemoryPathIO], MemoryPathIO]:
    """A MemoryPathIO subclass whose sessions all start from one tree seeded with ``files``,
    and an instance on that tree (the test's view of it)."""
    factory = base.with_files(files)
    return factory, factory()


def _tls_contexts(scratch: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    """A server context with a trustme certificate for 127.0.0.1/localhost, a client context
    trusting its CA, and the CA's PEM file (written in ``scratch``)."""
    import trustme  # lazily: only TLS servers need it

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ca_file = scratch / "trio_ftp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, client_context, ca_file


def _prepare(
    scratch: Path,
    *,
    users: Users = None,
    files: Files | None = None,
    root: Path | None = None,
    login: str = DEFAULT_LOGIN,
    password: str = DEFAULT_PASSWORD,
    tls: TLSMode = False,
    **server_kwargs: Any,
) -> _Prepared:
    """Build (not start) a server; ``scratch`` is a directory for the root and the CA file."""
    factory: type[AbstractPathIO[Any]] | None = server_kwargs.pop("path_io_factory", None)
    memory: MemoryPathIO | None = None
    in_memory = isinstance(factory, type) and issubclass(factory, MemoryPathIO)
    if files is not None or in_memory:
        if factory is None:
            factory = MemoryPathIO
        if not (isinstance(factory, type) and issubclass(factory, MemoryPathIO)):
            raise ValueError("files= needs path_io_factory=MemoryPathIO (or a subclass)")
        if root is not None:
            raise ValueError("root= is a directory on disk: give it or files=, not both")
        factory, memory = _memory_factory(factory, files or {})
        root = Path("/")
    elif root is None:
        root = scratch / "root"
        root.mkdir(exist_ok=True)
    if factory is not None:
        server_kwargs["path_io_factory"] = factory
    if users is None:
        users = [
            User(login, password, base_path=root),
            User(base_path=root, permissions=[Permission("/", writable=False)]),
        ]
    ca_file = client_context = None
    if tls:
        if tls not in (True, "explicit", "implicit"):
            raise ValueError(f"tls must be a bool, 'explicit' or 'implicit', got {tls!r}")
        if "ssl" in server_kwargs or "tls_context" in server_kwargs:
            raise ValueError("give tls= or your own ssl=/tls_context=, not both")
        server_context, client_context, ca_file = _tls_contexts(scratch)
        server_kwargs["ssl" if tls == "implicit" else "tls_context"] = server_context
    # A test of a wrong password should not wait the production delay (1 s).
    server_kwargs.setdefault("login_failure_delay", 0)
    server = Server(users, **server_kwargs)
    return _Prepared(server, root, login, password, ca_file, client_context, memory)


# trio fixtures -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_server_factory(tmp_path: Path) -> AsyncIterator[FTPServerFactory]:
    """What ``ftp_server_factory`` yields: starts servers in a nursery of this task, closes
    them all on exit. ``tmp_path`` holds the roots and CA files."""
    servers: list[Server] = []
    count = 0
    async with trio.open_nursery() as nursery:

        async def start(**options: Any) -> RunningFTPServer:
            nonlocal count
            count += 1
            scratch = tmp_path / f"trio_ftp-{count}" if count > 1 else tmp_path
            scratch.mkdir(exist_ok=True)
            prepared = _prepare(scratch, **options)
            with trio.fail_after(TIMEOUT):
                host, port = await nursery.start(prepared.server.serve, "127.0.0.1", 0)
            servers.append(prepared.server)
            return prepared.running(host, port)

        try:
            yield start
        finally:
            try:
                with trio.fail_after(TIMEOUT, shield=True):
                    for server in servers:
                        await server.close()
            finally:
                nursery.cancel_scope.cancel()


# threaded servers --------------------------------------------------------------------------


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (a port in use is an ``OSError`` to the
    caller, not an ``ExceptionGroup``); a group of several stays a group."""
    inner = getattr(exc, "exceptions", None)  # BaseExceptionGroup (exceptiongroup on 3.10)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


class ThreadedFTPServer:
    """A server running in a background thread with its own ``trio.run``, for code that is
    not trio: ``with ThreadedFTPServer(**options) as server: ...``, or ``start()``/``stop()``.

    Options are those of ``ftp_server_factory`` plus ``host=``/``port=`` (default
    127.0.0.1 and a free port). Without ``root=`` (or ``files=``) it serves a fresh temporary
    directory, removed by :meth:`stop`. Attributes are those of :class:`RunningFTPServer`;
    ``server`` lives in the server's thread: touch it only through
    ``trio.from_thread.run(..., trio_token=server.trio_token)``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self._host = host
        self._port = port
        self._options = options
        self._running: RunningFTPServer | None = None
        self._thread: threading.Thread | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._error: BaseException | None = None
        self.trio_token: trio.lowlevel.TrioToken | None = None

    # lifecycle
    def start(self) -> ThreadedFTPServer:
        """Start the thread and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._scratch = tempfile.TemporaryDirectory(prefix="trio_ftp-")
        started: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        try:
            error = started.get(timeout=TIMEOUT)
        except queue.Empty:
            error = TimeoutError(f"the FTP server did not start within {TIMEOUT} s")
        if error is not None:
            self.stop()
            raise error
        return self

    def stop(self) -> None:
        """Close the server (ending every session), join the thread, remove temporary files."""
        thread, self._thread = self._thread, None
        try:
            if thread is not None:
                running, token = self._running, self.trio_token
                try:
                    if running is not None and token is not None and thread.is_alive():
                        with contextlib.suppress(trio.RunFinishedError):
                            trio.from_thread.run(_close, running.server, trio_token=token)
                finally:
                    thread.join(TIMEOUT)
                if thread.is_alive():
                    raise RuntimeError(f"the FTP server thread did not stop within {TIMEOUT} s")
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None
        error, self._error = self._error, None
        if error is not None and self._running is not None:
            raise RuntimeError("the FTP server thread crashed") from error

    def __enter__(self) -> ThreadedFTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self, started: queue.SimpleQueue[BaseException | None]) -> None:
        try:
            trio.run(self._serve, started)
        except BaseException as exc:
            self._error = exc
            started.put(_single(exc))  # harmless when start() already returned

    async def _serve(self, started: queue.SimpleQueue[BaseException | None]) -> None:
        assert self._scratch is not None
        prepared = _prepare(Path(self._scratch.name), **self._options)
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(prepared.server.serve, self._host, self._port)
            self._running = prepared.running(host, port)
            self.trio_token = trio.lowlevel.current_trio_token()
            started.put(None)

    # attributes
    @property
    def running(self) -> RunningFTPServer:
        """The running server's description (:class:`RunningFTPServer`)."""
        if self._running is None or self._thread is None:
            raise RuntimeError("the server is not running: use start() or a with block")
        return self._running

    @property
    def server(self) -> Server:
        return self.running.server

    @property
    def host(self) -> str:
        return self.running.host

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def root(self) -> Path:
        return self.running.root

    @property
    def login(self) -> str:
        return self.running.login

    @property
    def password(self) -> str:
        return self.running.password

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def ca_file(self) -> Path | None:
        return self.running.ca_file

    @property
    def client_context(self) -> ssl.SSLContext | None:
        return self.running.client_context

    @property
    def memory(self) -> MemoryPathIO | None:
        return self.running.memory

    def __repr__(self) -> str:
        state = f"{self._running.host}:{self._running.port}" if self._running else "stopped"
        return f"{type(self).__name__}({state})"


async def _close(server: Server) -> None:
    await server.close()


@contextlib.contextmanager
def open_threaded_server_factory(tmp_path: Path) -> Iterator[Callable[..., ThreadedFTPServer]]:
    """What ``ftp_server_thread_factory`` yields: starts :class:`ThreadedFTPServer`s (roots
    under ``tmp_path`` unless given), stops and joins them all on exit."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**options: Any) -> ThreadedFTPServer:
            nonlocal count
            count += 1
            if "root" not in options and options.get("files") is None:
                options["root"] = tmp_path / ("root" if count == 1 else f"root-{count}")
                options["root"].mkdir()
            return stack.enter_context(ThreadedFTPServer(**options))

        yield start
