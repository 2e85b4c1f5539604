"""trio_ftp's pytest plugin as pytest loads it: the fixtures, and nothing of trio_ftp yet.

The ``pytest11`` entry point names this module, not ``trio_ftp.pytest_plugin``, because
importing anything inside the ``trio_ftp`` package runs ``trio_ftp/__init__.py``, and pytest
loads plugins before ``pytest --cov`` starts measuring: a downstream project's coverage of
trio_ftp's import-time lines would be wrong. So this module imports only pytest and the
standard library; each fixture imports :mod:`trio_ftp.pytest_plugin` (which does the work
and documents the fixtures) when a test uses it.

The trio fixtures run the server in the test's own trio loop, so they need pytest-trio and a
trio test. Instead of a bare "fixture 'nursery' not found" or "Trio fixtures can only be used
by Trio tests", a test that cannot use them fails at setup with a message that says what to
install and names the threaded fixtures, which work in any test.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from trio_ftp.pytest_plugin import FTPServerFactory, RunningFTPServer, ThreadedFTPServer

__all__ = [
    "THREAD_FIXTURES",
    "TRIO_FIXTURES",
    "ftp_server",
    "ftp_server_factory",
    "ftp_server_thread",
    "ftp_server_thread_factory",
    "ftps_server",
    "ftps_server_thread",
]

#: Fixtures that run the server in the test's trio loop: they need pytest-trio.
TRIO_FIXTURES = ("ftp_server", "ftps_server", "ftp_server_factory")
#: Fixtures that run the server in a background thread: any test, any client.
THREAD_FIXTURES = ("ftp_server_thread", "ftps_server_thread", "ftp_server_thread_factory")


def _pytest_trio_active(config: pytest.Config) -> bool:
    """Whether pytest-trio's plugin is registered in this run (installed and not ``-p no:trio``)."""
    plugin = sys.modules.get("pytest_trio.plugin")
    return plugin is not None and config.pluginmanager.is_registered(plugin)


def _trio_fixture_refusal(request: pytest.FixtureRequest) -> str | None:
    """Why this test cannot use the trio fixtures, or None when it can."""
    used = next((name for name in TRIO_FIXTURES if name in request.fixturenames), "ftp_server")
    what = f"trio_ftp's {used} fixture runs the FTP server in the test's trio loop"
    trio_test = (
        "a trio test (async def, with trio_mode = true in the pytest configuration or "
        "@pytest.mark.trio)"
    )
    threaded = (
        "the threaded fixtures, which run the server in a background thread and work in any "
        f"test with any client: {', '.join(THREAD_FIXTURES)}."
    )
    if not _pytest_trio_active(request.config):
        return (
            f"{what} and needs pytest-trio, which is not installed or is disabled in this run "
            f"(-p no:trio). Install it (pip install pytest-trio) and write {trio_test}, "
            f"or use {threaded}"
        )
    if request.node.get_closest_marker("trio") is None:
        return f"{what}, so the test must be {trio_test}. For any other test, use {threaded}"
    return None


@pytest.fixture
def _trio_ftp_trio_test(request: pytest.FixtureRequest) -> None:
    """Fails the test at setup, with what to do instead, unless it can use the trio fixtures.

    The trio fixtures request it first, so a test without pytest-trio gets this message
    rather than pytest's own about an async fixture nobody runs.
    """
    refusal = _trio_fixture_refusal(request)
    if refusal is not None:
        pytest.fail(refusal, pytrace=False)


# trio fixtures (pytest-trio) -----------------------------------------------------------------


@pytest.fixture
async def ftp_server_factory(
    _trio_ftp_trio_test: None, tmp_path: Path
) -> AsyncIterator[FTPServerFactory]:
    """``await ftp_server_factory(**options)`` starts a server on 127.0.0.1 (free port).

    Options: ``users=`` (what :class:`~trio_ftp.Server` accepts; default: ``login``/
    ``password`` read/write and anonymous read-only, rooted at ``root``), ``files=``
    (``{path: bytes or None for a directory}``: serve a :class:`~trio_ftp.MemoryPathIO`
    tree seeded with them), ``root=`` (a directory; default: a fresh one under ``tmp_path``),
    ``login=``/``password=`` (the default user's, and those of ``.url``), ``tls=``
    (``True``/``"explicit"``: AUTH TLS, ``"implicit"``: implicit FTPS, with a trustme CA),
    and any other :class:`~trio_ftp.Server` keyword. Every server is closed at teardown.
    Needs pytest-trio and a trio test; ``ftp_server_thread_factory`` works anywhere.
    """
    from trio_ftp.pytest_plugin import open_server_factory

    async with open_server_factory(tmp_path) as start:
        yield start


@pytest.fixture
async def ftp_server(ftp_server_factory: FTPServerFactory) -> RunningFTPServer:
    """A running FTP server on 127.0.0.1 serving a fresh temporary directory (``.root``).
    Needs pytest-trio and a trio test; ``ftp_server_thread`` works anywhere."""
    return await ftp_server_factory()


@pytest.fixture
async def ftps_server(ftp_server_factory: FTPServerFactory) -> RunningFTPServer:
    """As ``ftp_server``, with explicit FTPS (AUTH TLS); ``.ca_file``, ``.client_context``.
    Needs pytest-trio and a trio test; ``ftps_server_thread`` works anywhere."""
    return await ftp_server_factory(tls=True)


# threaded fixtures (any test) ------------------------------------------------------------------


@pytest.fixture
def ftp_server_thread_factory(tmp_path: Path) -> Iterator[Callable[..., ThreadedFTPServer]]:
    """``ftp_server_thread_factory(**options)`` starts a :class:`ThreadedFTPServer`
    (options as ``ftp_server_factory``'s); all are stopped and joined at teardown."""
    from trio_ftp.pytest_plugin import open_threaded_server_factory

    with open_threaded_server_factory(tmp_path) as start:
        yield start


@pytest.fixture
def ftp_server_thread(
    ftp_server_thread_factory: Callable[..., ThreadedFTPServer],
) -> ThreadedFTPServer:
    """A running FTP server in a background thread, serving a fresh directory (``.root``)."""
    return ftp_server_thread_factory()


@pytest.fixture
def ftps_server_thread(
    ftp_server_thread_factory: Callable[..., ThreadedFTPServer],
) -> ThreadedFTPServer:
    """As ``ftp_server_thread``, with explicit FTPS; ``.ca_file``, ``.client_context``."""
    return ftp_server_thread_factory(tls=True)
