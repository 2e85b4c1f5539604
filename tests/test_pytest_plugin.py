"""The pytest plugin: its fixtures in sample projects (through pytester), and the threaded
server on its own."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path, PurePosixPath

import pytest

from trio_ftp.pytest_plugin import THREAD_NAME, RunningFTPServer, ThreadedFTPServer

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
THREADED_FIXTURES = "ftp_server_thread, ftps_server_thread, ftp_server_thread_factory"

# The sample projects turn warnings into errors too, so a leaked socket fails them.
INI_TRIO = """
[pytest]
trio_mode = true
filterwarnings = error
"""
INI_PLAIN = """
[pytest]
filterwarnings = error
"""

SAMPLE_HELPERS = """
import ftplib
import io

import trio


async def in_thread(fn, *args):
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(fn, *args)


def get(ftp, name):
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    return out.getvalue()


def put(ftp, name, data):
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))
"""


def run_sample(
    pytester: pytest.Pytester, source: str, *, ini: str = INI_TRIO, args: tuple[str, ...] = ()
) -> pytest.RunResult:
    """Write a sample project (helpers, ini, one test file) and run it in a subprocess."""
    pytester.makeini(ini)
    pytester.makepyfile(sample_helpers=SAMPLE_HELPERS, test_sample=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args, timeout=60)


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_ftp_server_fixture_upload_download_list_and_anonymous(pytester: pytest.Pytester) -> None:
    """ftp_server serves .root read/write to .login and read-only to anonymous."""
    result = run_sample(
        pytester,
        """
import ftplib
import pathlib

import pytest
from sample_helpers import get, in_thread, put


async def test_attributes(ftp_server):
    assert ftp_server.host == "127.0.0.1" and ftp_server.port > 0
    assert isinstance(ftp_server.root, pathlib.Path) and ftp_server.root.is_dir()
    assert ftp_server.url == (
        f"ftp://{ftp_server.login}:{ftp_server.password}@127.0.0.1:{ftp_server.port}/"
    )
    assert ftp_server.ca_file is None and ftp_server.client_context is None
    assert ftp_server.server.connections == {}


async def test_upload_download_list(ftp_server):
    (ftp_server.root / "seed.txt").write_bytes(b"seeded")

    def client():
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(ftp_server.host, ftp_server.port)
            ftp.login(ftp_server.login, ftp_server.password)
            put(ftp, "up.bin", b"uploaded")
            return get(ftp, "seed.txt"), sorted(ftp.nlst())

    seeded, names = await in_thread(client)
    assert seeded == b"seeded"
    assert names == ["seed.txt", "up.bin"]
    assert (ftp_server.root / "up.bin").read_bytes() == b"uploaded"


async def test_anonymous_is_read_only(ftp_server):
    (ftp_server.root / "pub.txt").write_bytes(b"public")

    def client():
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(ftp_server.host, ftp_server.port)
            ftp.login()
            data = get(ftp, "pub.txt")
            with pytest.raises(ftplib.error_perm, match="^55[03]"):
                put(ftp, "nope.txt", b"x")
            with pytest.raises(ftplib.error_perm, match="^55[03]"):
                ftp.mkd("dir")
            return data

    assert await in_thread(client) == b"public"
    assert sorted(p.name for p in ftp_server.root.iterdir()) == ["pub.txt"]
""",
    )
    result.assert_outcomes(passed=3)


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_ftps_server_fixture(pytester: pytest.Pytester) -> None:
    """ftps_server speaks AUTH TLS with a certificate its client_context and ca_file trust."""
    result = run_sample(
        pytester,
        """
import ftplib
import ssl

import pytest
from sample_helpers import get, in_thread, put


@pytest.mark.trio
async def test_tls_transfer(ftps_server):
    assert isinstance(ftps_server.client_context, ssl.SSLContext)
    assert ftps_server.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")

    def client():
        with ftplib.FTP_TLS(context=ftps_server.client_context, timeout=10) as ftp:
            ftp.connect(ftps_server.host, ftps_server.port)
            ftp.auth()
            ftp.login(ftps_server.login, ftps_server.password)
            ftp.prot_p()
            put(ftp, "secret.bin", b"over tls")
            return get(ftp, "secret.bin"), ftp.sock.version()

    data, version = await in_thread(client)
    assert data == b"over tls" and version.startswith("TLS")
    assert (ftps_server.root / "secret.bin").read_bytes() == b"over tls"


@pytest.mark.trio
async def test_ca_file_alone_is_enough(ftps_server):
    context = ssl.create_default_context(cafile=str(ftps_server.ca_file))

    def client():
        with ftplib.FTP_TLS(context=context, timeout=10) as ftp:
            ftp.connect(ftps_server.host, ftps_server.port)
            return ftp.auth()

    assert (await in_thread(client)).startswith("234")


@pytest.mark.trio
async def test_untrusting_client_is_refused(ftps_server):
    def client():
        with ftplib.FTP_TLS(context=ssl.create_default_context(), timeout=10) as ftp:
            ftp.connect(ftps_server.host, ftps_server.port)
            with pytest.raises(ssl.SSLCertVerificationError):
                ftp.auth()

    await in_thread(client)
""",
        ini=INI_PLAIN,  # trio tests by marker, not trio_mode
    )
    result.assert_outcomes(passed=3)


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_ftp_server_factory_files_users_and_kwargs(pytester: pytest.Pytester) -> None:
    """ftp_server_factory seeds MemoryPathIO from files=, takes users= and Server keywords."""
    result = run_sample(
        pytester,
        """
import ftplib
from pathlib import PurePosixPath

import pytest
import trio_ftp
from sample_helpers import get, in_thread, put


async def test_files_are_served_from_memory(ftp_server_factory):
    server = await ftp_server_factory(files={"/a.txt": b"hi", "/dir/b.txt": b"bee", "/e/": None})

    def client():
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(server.host, server.port)
            ftp.login(server.login, server.password)
            put(ftp, "new.txt", b"fresh")
            return get(ftp, "a.txt"), get(ftp, "dir/b.txt"), sorted(ftp.nlst())

    a, b, names = await in_thread(client)
    assert (a, b) == (b"hi", b"bee")
    assert names == ["a.txt", "dir", "e", "new.txt"]
    assert await server.memory.exists(PurePosixPath("/new.txt"))


async def test_custom_users(ftp_server_factory, tmp_path):
    home = tmp_path / "alice"
    home.mkdir()
    users = trio_ftp.MemoryUserManager([trio_ftp.User("alice", "pw", base_path=home)])
    server = await ftp_server_factory(users=users, login="alice", password="pw")
    assert server.url.startswith("ftp://alice:pw@127.0.0.1:")

    def client():
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(server.host, server.port)
            with pytest.raises(ftplib.error_perm, match="^530"):
                ftp.login()  # no anonymous user here
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(server.host, server.port)
            ftp.login("alice", "pw")
            put(ftp, "x.txt", b"from alice")

    await in_thread(client)
    assert (home / "x.txt").read_bytes() == b"from alice"


async def test_server_keywords_and_several_servers(ftp_server_factory):
    first = await ftp_server_factory(welcome_message="hello there")
    second = await ftp_server_factory(tls="implicit", login="bob", password="b0b")
    assert first.port != second.port and first.root != second.root
    assert second.server.ssl is not None and second.ca_file.exists()

    def client():
        with ftplib.FTP(timeout=10) as ftp:
            return ftp.connect(first.host, first.port)

    assert "hello there" in await in_thread(client)
""",
    )
    result.assert_outcomes(passed=3)


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_thread_fixtures_without_pytest_trio(pytester: pytest.Pytester) -> None:
    """ftp_server_thread and ftps_server_thread serve plain sync tests, pytest-trio disabled."""
    result = run_sample(
        pytester,
        """
import ftplib
import ssl
import threading
import unittest

import pytest
from sample_helpers import get, put
from trio_ftp.pytest_plugin import ThreadedFTPServer


def test_sync_upload_download(ftp_server_thread):
    (ftp_server_thread.root / "seed.txt").write_bytes(b"seeded")
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(ftp_server_thread.host, ftp_server_thread.port)
        ftp.login(ftp_server_thread.login, ftp_server_thread.password)
        put(ftp, "up.bin", b"uploaded")
        assert get(ftp, "seed.txt") == b"seeded"
        assert sorted(ftp.nlst()) == ["seed.txt", "up.bin"]
    assert (ftp_server_thread.root / "up.bin").read_bytes() == b"uploaded"
    assert ftp_server_thread.url.endswith(f"@127.0.0.1:{ftp_server_thread.port}/")


def test_sync_anonymous_read_only(ftp_server_thread):
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(ftp_server_thread.host, ftp_server_thread.port)
        ftp.login()
        with pytest.raises(ftplib.error_perm, match="^55[03]"):
            put(ftp, "nope.txt", b"x")


def test_sync_tls(ftps_server_thread):
    with ftplib.FTP_TLS(context=ftps_server_thread.client_context, timeout=10) as ftp:
        ftp.connect(ftps_server_thread.host, ftps_server_thread.port)
        ftp.auth()
        ftp.login(ftps_server_thread.login, ftps_server_thread.password)
        ftp.prot_p()
        put(ftp, "t.bin", b"tls")
        assert get(ftp, "t.bin") == b"tls"
    assert ftps_server_thread.ca_file.exists()


def test_sync_factory_files(ftp_server_thread_factory):
    server = ftp_server_thread_factory(files={"/a.txt": b"hi"})
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(server.host, server.port)
        ftp.login(server.login, server.password)
        assert get(ftp, "a.txt") == b"hi"


class UnittestStyle(unittest.TestCase):
    def setUp(self):
        self.ftp_server = ThreadedFTPServer(files={"/u.txt": b"unit"}).start()
        self.addCleanup(self.ftp_server.stop)

    def test_download(self):
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(self.ftp_server.host, self.ftp_server.port)
            ftp.login()
            self.assertEqual(get(ftp, "u.txt"), b"unit")
""",
        ini=INI_PLAIN,
        args=("-p", "no:trio"),
    )
    result.assert_outcomes(passed=5)


async def test_plugin_fixture_in_this_project(ftp_server: RunningFTPServer) -> None:
    """The plugin is auto-loaded here too, next to tests/conftest.py's own fixtures."""
    assert ftp_server.root.is_dir()
    assert ftp_server.port > 0
    assert ftp_server.server.address == (ftp_server.host, ftp_server.port)


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_threaded_server_starts_fast_and_stops_cleanly() -> None:
    """ThreadedFTPServer starts in under a second; stop() joins its thread and frees its port."""
    assert _threads() == []
    started = time.monotonic()
    with ThreadedFTPServer() as server:
        elapsed = time.monotonic() - started
        port, root = server.port, server.root
        assert len(_threads()) == 1
        assert not _port_is_free(port)
        with socket.create_connection((server.host, port), timeout=5) as sock:
            assert sock.recv(100).startswith(b"220")
    assert elapsed < 1.0, f"took {elapsed:.3f} s to start"
    assert _threads() == []
    assert _port_is_free(port)
    assert not root.exists()  # its temporary directory is removed
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port


def test_threaded_server_reports_bad_options_and_leaves_no_thread(tmp_path: Path) -> None:
    """A server that cannot be built raises from start(), with its thread already joined."""
    with pytest.raises(TypeError, match="no_such_option"), ThreadedFTPServer(no_such_option=1):
        pass  # pragma: no cover
    with pytest.raises(ValueError, match="not both"), ThreadedFTPServer(root=tmp_path, files={}):
        pass  # pragma: no cover
    assert _threads() == []


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_trio_fixture_closes_server_when_the_test_fails(pytester: pytest.Pytester) -> None:
    """A failing test's ftp_server is still closed at teardown: its port is free afterwards."""
    result = run_sample(
        pytester,
        """
import socket
import sys

seen = []


async def test_a_fails(ftp_server):
    seen.append(ftp_server)
    raise AssertionError("boom")


def test_b_previous_server_is_closed():
    (server,) = seen
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))
    with socket.socket() as sock, __import__("pytest").raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", server.port))
""",
    )
    result.assert_outcomes(passed=1, failed=1)


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_plugin_imports_without_trustme_or_pytest_trio(pytester: pytest.Pytester) -> None:
    """Importing the plugin pulls in neither trustme nor pytest-trio."""
    result = pytester.run(
        sys.executable,
        "-c",
        "import sys; sys.modules['trustme'] = sys.modules['pytest_trio'] = None; "
        "import trio_ftp.pytest_plugin as p; print(p.ThreadedFTPServer.__name__)",
    )
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == ["ThreadedFTPServer"]


# Loading the plugin imports nothing of trio_ftp; the trio fixtures say what to use instead.


def declared_entry_point() -> tuple[str, str]:
    """pyproject.toml's pytest11 entry point: (plugin name, module)."""
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[project.entry-points.pytest11]\n", 1)[1].split("\n[", 1)[0]
    (line,) = [line for line in section.splitlines() if "=" in line]
    name, _, module = line.partition("=")
    return name.strip(), module.strip().strip('"')


def install_declared_entry_point(pytester: pytest.Pytester) -> str:
    """Register pyproject.toml's entry point in the sample project; return its module.

    The installed metadata can be older than this checkout (an editable install keeps the
    entry point of its install time). A distribution in the sample project's directory comes
    first on the subprocess's sys.path, and pytest skips a later plugin of the same name, so
    the run loads exactly what pyproject.toml declares, through pytest's own autoload.
    """
    name, module = declared_entry_point()
    dist = pytester.mkdir("trio_ftp_under_test-0.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: trio_ftp_under_test\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{name} = {module}\n")
    return module


# A downstream conftest: what was imported when pytest-cov would start measuring (conftests are
# loaded after every plugin, in the hook where pytest-cov starts) and after collection.
IMPORT_WATCH_CONFTEST = """
import sys

WATCHED = ("trio_ftp", "trio")
seen = {"conftest": {name: name in sys.modules for name in WATCHED}}


def pytest_configure(config):
    seen["plugin"] = getattr(config.pluginmanager.get_plugin("trio_ftp"), "__name__", None)


def pytest_collection_finish(session):
    seen["collected"] = {name: name in sys.modules for name in WATCHED}
"""


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
@pytest.mark.parametrize("pytest_trio", ["enabled", "disabled"])
def test_loading_the_plugin_imports_neither_trio_ftp_nor_trio(
    pytester: pytest.Pytester, pytest_trio: str
) -> None:
    """The autoloaded plugin imports trio_ftp only when a test uses a fixture: a downstream
    ``pytest --cov`` then sees trio_ftp's import-time lines run. It imports trio neither (here
    pytest-trio, which imports trio itself, is disabled)."""
    module = install_declared_entry_point(pytester)
    pytester.makeconftest(IMPORT_WATCH_CONFTEST)
    trio_loaded = pytest_trio == "enabled"
    result = run_sample(
        pytester,
        f"""
import sys

from conftest import seen


def test_nothing_of_trio_ftp_before_a_fixture():
    assert seen["plugin"] == {module!r}
    assert seen["conftest"] == {{"trio_ftp": False, "trio": {trio_loaded}}}
    assert seen["collected"] == {{"trio_ftp": False, "trio": {trio_loaded}}}
    assert "trio_ftp" not in sys.modules


def test_a_fixture_imports_it(ftp_server_thread):
    assert "trio_ftp" in sys.modules and "trio" in sys.modules
    assert ftp_server_thread.port > 0
""",
        ini=INI_PLAIN,
        args=("-p", "no:trio") if pytest_trio == "disabled" else (),
    )
    result.assert_outcomes(passed=2)


# Every trio fixture, requested by a sync test and by an async one.
TRIO_FIXTURE_USERS = """
def test_sync_ftp_server(ftp_server):
    pass


async def test_async_ftps_server(ftps_server):
    pass


def test_sync_ftp_server_factory(ftp_server_factory):
    pass


def test_threaded_still_works(ftp_server_thread):
    assert ftp_server_thread.port > 0
"""


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_trio_fixtures_without_pytest_trio_point_to_the_threaded_ones(
    pytester: pytest.Pytester,
) -> None:
    """Without pytest-trio a trio fixture fails at setup with a message that says how to
    install pytest-trio and names the threaded fixtures, not "fixture 'nursery' not found"."""
    result = run_sample(pytester, TRIO_FIXTURE_USERS, ini=INI_PLAIN, args=("-p", "no:trio"))
    result.assert_outcomes(passed=1, errors=3)
    output = result.stdout.str()
    for name in ("ftp_server", "ftps_server", "ftp_server_factory"):
        result.stdout.fnmatch_lines(
            [
                f"*ERROR at setup of test_*_{name} *",
                f"trio_ftp's {name} fixture runs the FTP server in the test's trio loop and "
                "needs pytest-trio*pip install pytest-trio*"
                f"or use the threaded fixtures*: {THREADED_FIXTURES}.",
            ]
        )
    assert "nursery" not in output
    assert "Traceback" not in output
    assert "PytestRemovedIn9Warning" not in output


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_trio_fixtures_in_a_test_that_is_not_trio_point_to_the_threaded_ones(
    pytester: pytest.Pytester,
) -> None:
    """With pytest-trio but outside a trio test (no trio_mode, no marker), the same fixtures
    fail at setup saying the test must be a trio test, and name the threaded fixtures."""
    result = run_sample(pytester, TRIO_FIXTURE_USERS, ini=INI_PLAIN)
    result.assert_outcomes(passed=1, errors=3)
    for name in ("ftp_server", "ftps_server", "ftp_server_factory"):
        result.stdout.fnmatch_lines(
            [
                f"*ERROR at setup of test_*_{name} *",
                f"trio_ftp's {name} fixture runs the FTP server in the test's trio loop, so "
                "the test must be a trio test*@pytest.mark.trio). For any other test, use the "
                f"threaded fixtures*: {THREADED_FIXTURES}.",
            ]
        )
    assert "Trio fixtures can only be used by Trio tests" not in result.stdout.str()


@pytest.mark.slow  # runs pytest in a subprocess: 1-2 s
def test_fixtures_by_pytest_plugins_with_autoload_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest_plugins = ["trio_ftp.pytest_plugin"]`` still registers every fixture (for runs
    with PYTEST_DISABLE_PLUGIN_AUTOLOAD, and metadata that still names that module)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["trio_ftp.pytest_plugin", "pytest_trio.plugin"]')
    result = run_sample(
        pytester,
        """
from sample_helpers import in_thread


async def test_trio(ftp_server, ftps_server, ftp_server_factory):
    other = await ftp_server_factory(files={"/a": b"a"})
    assert len({ftp_server.port, ftps_server.port, other.port}) == 3


def test_threads(ftp_server_thread, ftps_server_thread, ftp_server_thread_factory):
    other = ftp_server_thread_factory()
    assert len({ftp_server_thread.port, ftps_server_thread.port, other.port}) == 3
""",
    )
    result.assert_outcomes(passed=2)


def test_failed_logins_are_answered_without_the_production_delay(tmp_path: Path) -> None:
    """The fixtures' servers answer a wrong password at once (``login_failure_delay=0``);
    a test that wants the delay asks for it."""
    import ftplib

    with ThreadedFTPServer() as server:
        assert server.server.options.login.failure_delay == 0
        with ftplib.FTP() as ftp:
            ftp.connect(server.host, server.port, timeout=10)
            with pytest.raises(ftplib.error_perm, match="530"):
                ftp.login(server.login, "wrong")
    with ThreadedFTPServer(root=tmp_path, login_failure_delay=0.5) as server:
        assert server.server.options.login.failure_delay == 0.5


async def test_memory_backend_preloaded_through_a_public_constructor() -> None:
    """``MemoryPathIO.with_files``: every session and the test's own view share one tree."""
    import trio

    from trio_ftp import MemoryPathIO, Server, User

    factory = MemoryPathIO.with_files({"/in/a.txt": b"hello", "/empty/": None})
    server = Server([User("u", "p")], path_io_factory=factory, login_failure_delay=0)
    view = factory()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server.serve, "127.0.0.1", 0)

        def client() -> tuple[bytes, list[str]]:
            import ftplib
            import io

            with ftplib.FTP() as ftp:
                ftp.connect(host, port, timeout=10)
                ftp.login("u", "p")
                out = io.BytesIO()
                ftp.retrbinary("RETR /in/a.txt", out.write)
                ftp.storbinary("STOR /empty/new.txt", io.BytesIO(b"new"))
                return out.getvalue(), sorted(ftp.nlst("/"))

        got, names = await trio.to_thread.run_sync(client)
        await server.close()
    assert got == b"hello"
    assert names == ["/empty", "/in"] or names == ["empty", "in"]
    async with view.open(PurePosixPath("/empty/new.txt"), "rb") as file:
        assert await file.read() == b"new"
    assert factory.__name__ == "SeededMemoryPathIO"
    assert MemoryPathIO.with_files({})().tree is not view.tree  # each call: its own tree


def test_the_testing_extra_brings_what_the_tls_fixtures_need() -> None:
    """``pip install 'trio_ftp[testing]'`` is enough for ftps_server and
    ftps_server_thread: the extra declares trustme."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    testing = project["optional-dependencies"]["testing"]
    assert any(
        requirement.split(">")[0].split("=")[0].strip() == "trustme" for requirement in testing
    )
