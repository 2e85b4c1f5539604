"""The session core's shape, checked from the source: who may import and reach whom.

A session knows its server only through ``interfaces.SessionHost``; data channels get their
collaborators explicitly; handlers reach the session only through ``connection.control`` and
``connection.data``; the control socket's raw I/O has one owner.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import trio_ftp

PACKAGE = Path(trio_ftp.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Relative modules a source file imports (``from .base import x`` gives ``base``),
    type-checking imports included."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add((node.module or "").split(".")[0])
    return found


def test_the_session_does_not_import_the_server() -> None:
    imported = _imported_modules(PACKAGE / "session.py")
    assert not imported & {"base", "server", "handlers"}


def test_data_channels_import_neither_session_nor_server() -> None:
    assert not _imported_modules(PACKAGE / "datachannel.py") & {"session", "base", "server"}


def test_handlers_reach_no_session_internals() -> None:
    pattern = re.compile(r"connection\.session\b|\._nursery\b|\.session\.")
    for path in sorted((PACKAGE / "handlers").glob("*.py")):
        assert not pattern.search(path.read_text()), path.name
    assert "._nursery" not in (PACKAGE / "datachannel.py").read_text().replace("self._nursery", "")


def test_raw_control_socket_io_has_one_owner() -> None:
    """Only ``controlsocket.py`` reads or writes a socket's descriptor directly
    (``fastpath.py`` moves data-connection bytes through pipes and files, its own job)."""
    raw = re.compile(r"\bos\.(read|write)\([^)]*fileno\(\)")
    owners = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if raw.search(path.read_text())
    ]
    assert owners == ["controlsocket.py"]
